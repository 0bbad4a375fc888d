"""The exponents of Cagnetta et al. (2026) as typed results: β of ‖C(n)‖ ∝ n^-β (`BetaFit`), γ of
H_n − H_∞ ∝ n^-γ (`GammaFit`) and the measured α_D of L(P) − H_∞ ∝ P^-α_D (`AlphaFit`).

Each keeps its `PowerLawFit` (the exponent and its CI are read from it, never stored twice) and the
range-sensitivity table; `to_dict()` is the JSON the CLI and analyses/langstats_shakespeare.py write:
{fit, NAME, NAME_ci, …the subclass's fields…, sensitivity}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..fitting import PowerLawFit
from ..record import Record

__all__ = ["ExponentFit", "BetaFit", "GammaFit", "AlphaFit"]


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
