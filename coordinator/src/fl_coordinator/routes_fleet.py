"""REST routes of the fleet as a whole: device counts by state, and who the caller is."""

from __future__ import annotations

from fastapi import APIRouter

from fl_coordinator.api_auth import CallerDep
from fl_coordinator.api_deps import RegistryDep, SettingsDep
from fl_shared.wire import FleetSummary, Whoami

router = APIRouter(prefix="/api/v1", tags=["fleet"])


@router.get("/fleet/summary", response_model=FleetSummary)
def fleet_summary(registry: RegistryDep) -> FleetSummary:
    """How many devices are online, stale, offline, drained and revoked now (the same rules as
    the ``status`` filter of the device listing), and the thresholds behind them."""
    return registry.fleet_summary()


@router.get("/whoami", response_model=Whoami)
async def whoami(caller: CallerDep, settings: SettingsDep) -> Whoami:
    """Who the coordinator takes the caller for: an admin or read-only token, an admin in the
    development mode, or the public in the public read-only mode (device credentials: 403)."""
    principal = caller.principal
    if principal is not None:
        return Whoami(
            role="admin" if principal.kind == "admin" else "read",
            name=principal.name,
            token_id=principal.token_id,
            development=settings.insecure,
            public_read_only=settings.public_read_only,
        )
    return Whoami(
        role="admin" if caller.development else "public",
        name="development mode (no credential)" if caller.development else "public",
        token_id=None,
        development=settings.insecure,
        public_read_only=settings.public_read_only,
    )
