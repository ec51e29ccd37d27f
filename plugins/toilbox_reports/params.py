"""report.summary's parameters (cheap to import: only pydantic and toilbox.units)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from toilbox.units import Duration, config_path


class SummaryParams(BaseModel):
    # defer_build: the schema is built on first use, not on every `toilbox` start-up.
    model_config = ConfigDict(extra="forbid", defer_build=True)

    window: Duration = Field(86400.0, gt=0, description="how far back: 24h, 7d, ...")
    format: Literal["html", "markdown", "json"] = Field(
        "html", description="what is written to files and stdout"
    )
    to: list[str] = Field(
        default_factory=lambda: ["-"],
        description='file paths ({date} is replaced by the day) or "-" for stdout',
    )
    tasks: list[str] | None = Field(None, description="only these tasks (default: all)")
    host: str | None = Field(None, description="only this host's runs (default: the fleet)")
    title: str = Field("toilbox report", description="the report's heading")

    @field_validator("to")
    @classmethod
    def _paths_from_the_config(cls, targets: list[str], info: ValidationInfo) -> list[str]:
        # A relative file is read from the config's directory (from `toilbox report -o`,
        # which has no config context, from the current one); "-" and URLs stay as given.
        return [t if t == "-" or "://" in t else str(config_path(t, info)) for t in targets]
