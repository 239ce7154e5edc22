"""scikit-learn's estimator contract, without importing scikit-learn.

``get_params``, ``set_params`` and a ``repr`` of the parameters that differ from their defaults are
all ``sklearn.base.clone``, ``GridSearchCV`` and a notebook need from an estimator. Inheriting
``sklearn.base.BaseEstimator`` would give them too, but importing ``sklearn.base`` costs 1.1-1.3 s
of CPU (measured on the project's 2-core machine), paid by every command that loads a classifier,
warm runs included, which otherwise never import scikit-learn. The parameters are read from
``__init__``'s signature, as scikit-learn reads them, so the list lives in one place.
"""

from __future__ import annotations

import inspect
from typing import Any

from headstart.errors import InvalidParameterError

__all__ = ["Parameters"]


class Parameters:
    """Mixin: the keyword arguments of ``__init__`` are the estimator's parameters, stored as
    attributes of the same names (``__init__`` does nothing else)."""

    @classmethod
    def _param_defaults(cls) -> dict[str, Any]:
        signature = inspect.signature(cls.__init__)
        return {
            name: p.default
            for name, p in signature.parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The parameters as given to ``__init__`` (``deep`` is accepted for scikit-learn; no
        parameter of ours is itself an estimator)."""
        return {name: getattr(self, name) for name in self._param_defaults()}

    def set_params(self, **params: Any) -> Any:
        """Set parameters by name and return the estimator, as scikit-learn's do.

        Raises:
            InvalidParameterError: a name that is not a parameter (also a ``ValueError``, which
                is what scikit-learn raises).
        """
        known = self._param_defaults()
        for name, value in params.items():
            if name not in known:
                raise InvalidParameterError(
                    f"Invalid parameter {name!r} for {type(self).__name__}; valid parameters "
                    f"are: {', '.join(sorted(known))}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        changed = [
            f"{name}={getattr(self, name)!r}"
            for name, default in self._param_defaults().items()
            if not _same(getattr(self, name), default)
        ]
        return f"{type(self).__name__}({', '.join(changed)})"


def _same(value: Any, default: Any) -> bool:
    if value is default:
        return True
    try:
        return bool(type(value) is type(default) and value == default)
    except Exception:  # an array-like parameter compares element-wise
        return False
