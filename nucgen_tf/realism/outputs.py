"""Write a realism report as files: the JSON document and the PNG, for any caller.

`nucgen realism` and `nucgen synthesize --realism_reference` both write the same pair, so a
synthetic folder carries its own report next to its manifest.
"""

from __future__ import annotations

from nucgen_tf import io
from nucgen_tf.realism import fields as fields_lib
from nucgen_tf.realism.distances import RealismReport, measure_and_compare
from nucgen_tf.realism.figure import realism_figure


def _crop_pairs(folder: io.PathLike, n: int) -> list:
    listed = fields_lib.list_fields(folder)
    return [fields_lib.read_field(f) for f in listed[:: max(1, len(listed) // max(n, 1))][:n]]


def write_report(
    real_dir: io.PathLike,
    synthetic_dir: io.PathLike,
    json_path: io.PathLike | None = None,
    png_path: io.PathLike | None = None,
    small_area: float = 150.0,
    crops: int = 3,
) -> tuple[RealismReport, dict]:
    """Measure both folders, compare them, write the JSON and PNG (atomically) when asked.

    Returns:
        (report, JSON document: folders, small_area and `report.to_json()`).

    Raises:
        io.DataError: a missing or empty folder, or a bad file.
    """
    report, real, synthetic = measure_and_compare(real_dir, synthetic_dir, small_area=small_area)
    document = {"real": str(real_dir), "synthetic": str(synthetic_dir), "small_area": small_area}
    document.update(report.to_json())
    if png_path:
        pairs = [_crop_pairs(folder, crops) for folder in (real_dir, synthetic_dir)]
        io.write_png(png_path, realism_figure(real, synthetic, report, *pairs))
    if json_path:
        io.write_json(json_path, document)
    return report, document
