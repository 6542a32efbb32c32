"""The selection pipeline (docs/selection.md): compress data and candidates, proxy fine-tune, rank.

``damoc.select`` is both this package and the Python API's ``damoc.select(job, ...)``: importing the
package makes it the ``select`` attribute of ``damoc``, so the package itself is callable and runs
:func:`damoc.api.select`.
"""

import sys
import types


class _SelectPackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from damoc.api import select

        return select(*args, **kwargs)


sys.modules[__name__].__class__ = _SelectPackage
