"""FileSettings: pydantic-settings where flags beat env, and env beats one table of a TOML file."""

from __future__ import annotations

import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Self

from pydantic import ValidationError
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource

from fl_shared.errors import SettingsError

_FILE_VALUES: ContextVar[dict[str, Any] | None] = ContextVar("file_settings_values", default=None)


class FileSettings(BaseSettings):
    """Base of each program's settings; build them with ``load()``."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags, then environment, then the file."""
        return (
            init_settings,
            env_settings,
            InitSettingsSource(settings_cls, _FILE_VALUES.get() or {}),
        )

    @classmethod
    def load(cls, config_file: Path | None, table: str, **flags: Any) -> Self:
        """Build settings from flags (None means unset), the environment and ``[table]``.

        Raises SettingsError with one line naming the file or the invalid setting.
        """
        file_values: dict[str, Any] = {}
        if config_file is not None:
            try:
                with config_file.open("rb") as fh:
                    file_values = dict(tomllib.load(fh).get(table, {}))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise SettingsError(f"cannot read config {config_file}: {exc}") from exc
        token = _FILE_VALUES.set(file_values)
        try:
            return cls(**{k: v for k, v in flags.items() if v is not None})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "settings"
            raise SettingsError(f"invalid setting {where}: {first['msg']}") from exc
        finally:
            _FILE_VALUES.reset(token)
