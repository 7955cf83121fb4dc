// How a device is described in one line: hardware, accelerator, speed; and a cache of names.

import { api } from './api.js';
import { DASH, isNum } from './dom.js';

/** "Jetson Orin NX 16GB", or "x86_64 8-core", or the platform string. */
export function archModel(device) {
  const caps = device.capabilities;
  if (caps && caps.jetson && caps.jetson.model) return caps.jetson.model;
  if (caps && caps.identity && caps.identity.arch) {
    const cores = caps.cpu && caps.cpu.cores ? ` ${caps.cpu.cores}-core` : '';
    return `${caps.identity.arch}${cores}`;
  }
  return device.platform || DASH;
}

/** The CPU model line under archModel, when known. */
export function cpuModel(device) {
  const caps = device.capabilities;
  return (caps && caps.cpu && caps.cpu.model) || '';
}

/**
 * {kind: "Jetson" | GPU name | "CPU", cuda: true | false | null}; cuda is null when there is
 * nothing to run CUDA on and no report of it.
 */
export function accelerator(device) {
  const caps = device.capabilities;
  if (!caps) return { kind: DASH, cuda: null };
  const cuda = Boolean(caps.cuda && caps.cuda.torch_cuda_ok);
  if (caps.jetson) return { kind: 'Jetson', cuda };
  const gpus = caps.nvidia_gpus || [];
  if (gpus.length > 0) {
    const name = gpus[0].name || 'NVIDIA GPU';
    return { kind: gpus.length > 1 ? `${gpus.length}× ${name}` : name, cuda };
  }
  return { kind: 'CPU', cuda: cuda ? true : null };
}

export function speedOf(device) {
  const caps = device.capabilities;
  const v = caps && caps.speed ? caps.speed.torch_train_samples_per_s : null;
  return isNum(v) ? v : null;
}

export function powerMode(device) {
  const status = device.last_status;
  if (status && status.power_mode) return status.power_mode;
  const jetson = device.capabilities && device.capabilities.jetson;
  return (jetson && jetson.power_mode_name) || DASH;
}

// ---- device names (rounds list device ids only) -------------------------------------------

const names = new Map();

export function rememberName(deviceId, name) {
  if (deviceId && name) names.set(deviceId, name);
}

export function nameOf(deviceId) {
  const known = names.get(deviceId);
  return typeof known === 'string' ? known : null;
}

/** Look up the names of the ids not known yet (a few calls at a time); never throws. */
export async function resolveNames(ids) {
  const missing = [...new Set(ids)].filter((id) => !names.has(id));
  const queue = missing.slice();
  const worker = async () => {
    while (queue.length > 0) {
      const id = queue.shift();
      names.set(id, null); // in flight, or unknown: never asked twice
      try {
        const device = await api.get(`devices/${encodeURIComponent(id)}`);
        names.set(id, device.name || id);
      } catch {
        names.set(id, id);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(6, queue.length) }, worker));
}
