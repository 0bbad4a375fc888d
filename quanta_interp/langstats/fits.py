"""The exponents of Cagnetta et al. (2026) as typed results: β of ‖C(n)‖ ∝ n^-β (`BetaFit`), γ of
H_n − H_∞ ∝ n^-γ (`GammaFit`) and the measured α_D of L(P) − H_∞ ∝ P^-α_D (`AlphaFit`).

Each keeps its `PowerLawFit` (the exponent and its CI are read from it, never stored twice) and the
range-sensitivity table; `to_dict()` is the JSON the CLI and analyses/langstats_shakespeare.py write:
{fit, NAME, NAME_ci, …the subclass's fields…, sensitivity}.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from ..fitting import PowerLawFit

__all__ = ["Record", "omitted_if_none", "ExponentFit", "BetaFit", "GammaFit", "AlphaFit"]


def omitted_if_none():
    """A `Record` field left out of `to_dict()` while it is None (a fit that was not made), default None."""
    return field(default=None, metadata={"omit_none": True})


@dataclass(frozen=True)
class Record:
    """Base of the langstats results: `to_dict()` gives the fields in order, name → value, a value with a
    `to_dict` as its `to_dict()` (numpy arrays are left for `io.to_jsonable`), `omitted_if_none()` fields
    left out while None."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON record of the result (see the class)."""
        return {f.name: (v.to_dict() if hasattr(v, "to_dict") else v)
                for f in fields(self) for v in (getattr(self, f.name),)
                if not (v is None and f.metadata.get("omit_none"))}


@dataclass(frozen=True)
class ExponentFit(Record):
    """A fitted exponent: the power-law fit and its fit-range sensitivity. Subclasses name the exponent
    (`NAME`, the JSON key) and add their fields between the CI and `sensitivity` in `to_dict()`.

    Attributes
    ----------
    fit : PowerLawFit
        The fit; `exponent` is the exponent, `exponent_ci` its 95 % bootstrap interval.
    sensitivity : list of dict
        `fitting.fit_range_sensitivity` rows: the exponent refitted on sub-ranges.
    """

    fit: PowerLawFit
    sensitivity: list[dict]
    NAME: ClassVar[str] = "exponent"

    @property
    def value(self) -> float:
        """The exponent (dimensionless), `fit.exponent`."""
        return self.fit.exponent

    @property
    def ci(self) -> list[float]:
        """Its 95 % bootstrap interval [lo, hi], `fit.exponent_ci`."""
        return list(self.fit.exponent_ci)

    def to_dict(self) -> dict[str, Any]:
        """{`fit`, NAME, NAME_ci, the subclass's fields, `sensitivity`}, as the fits wrote it before they were typed."""
        extra = {k: v for k, v in super().to_dict().items() if k not in ("fit", "sensitivity")}
        return {"fit": self.fit.to_dict(), self.NAME: self.value, f"{self.NAME}_ci": self.ci, **extra,
                "sensitivity": self.sensitivity}


@dataclass(frozen=True)
class BetaFit(ExponentFit):
    """β of ‖C(n)‖ ∝ n^-β (Cagnetta et al. 2026), fitted on the lags above the noise floor (`fit_beta`).

    Attributes
    ----------
    lags_used : list of float
        The lags fitted (norm above `floor_factor` × the floor), increasing.
    beta, beta_ci
        `value` and `ci`.
    """

    lags_used: list[float]
    NAME: ClassVar[str] = "beta"
    beta = ExponentFit.value
    beta_ci = ExponentFit.ci


@dataclass(frozen=True)
class GammaFit(ExponentFit):
    """γ of H_n ≈ H_∞ + A·n^-γ (Cagnetta et al. 2026), as `entropy.fit_gamma` fits it.

    Attributes
    ----------
    H_inf : float or None
        H_∞ in nats: fitted ("fit offset"), given ("fixed offset"), or None ("raw log-log").
    mode : str
        "fit offset", "fixed offset" or "raw log-log".
    gamma, gamma_ci
        `value` and `ci`.
    """

    H_inf: float | None
    mode: str
    NAME: ClassVar[str] = "gamma"
    gamma = ExponentFit.value
    gamma_ci = ExponentFit.ci


@dataclass(frozen=True)
class AlphaFit(ExponentFit):
    """The measured α_D of L(P) − H_∞ ∝ P^-α_D (Cagnetta et al. 2026), as `measure.fit_alpha_measured` fits it.

    Attributes
    ----------
    H_inf : float
        H_∞ in nats, given or fitted.
    alpha_D, alpha_D_ci
        `value` and `ci`.
    """

    H_inf: float
    NAME: ClassVar[str] = "alpha_D"
    alpha_D = ExponentFit.value
    alpha_D_ci = ExponentFit.ci
