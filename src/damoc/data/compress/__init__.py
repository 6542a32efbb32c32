"""Token compression with a budget controller, fidelity back-off, and rewriting (docs/token_compression.md, docs/rewriting.md).

Public API::

    from damoc.data.compress import CompressConfig, compress_examples
    result = compress_examples(examples, CompressConfig(rate=0.5), model=None, tok=None)
    result.examples, result.records, result.summary
"""

from damoc.data.compress.compressor import compress_examples, compress_text
from damoc.data.compress.config import CompressConfig, CompressJob, RewriteConfig, RewriteJob
from damoc.data.compress.records import Attempt, CompressRecord, CompressResult, CompressSummary

__all__ = [
    "Attempt",
    "CompressConfig",
    "CompressJob",
    "CompressRecord",
    "CompressResult",
    "CompressSummary",
    "RewriteConfig",
    "RewriteJob",
    "compress_examples",
    "compress_text",
]
