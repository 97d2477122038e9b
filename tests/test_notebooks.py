"""Every notebook in notebooks/ runs top to bottom in a fresh kernel, and is committed
without outputs (so what a reader sees is what the current code produces); every
picture it draws opens (Pillow for PNG, rsvg-convert for SVG) and is not blank."""

import base64
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_the_five_notebooks_are_there():
    assert [p.stem for p in NOTEBOOKS] == ["01-trust-chain", "02-anatomy-of-a-tpm-command",
                                           "03-ring-throughput", "04-attacks", "05-deep-quote"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear outputs"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_top_to_bottom_in_a_fresh_kernel(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    start = time.monotonic()
    client.execute()                 # raises CellExecutionError naming the cell that failed
    elapsed = time.monotonic() - start
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.get("output_type") == "error"]
    assert not errors
    pictures = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
                if "image/png" in o.get("data", {}) or "image/svg+xml" in o.get("data", {})]
    assert pictures, f"{path.name} draws nothing"
    for i, output in enumerate(pictures):
        check_picture(output["data"], f"{path.name} picture {i + 1}", tmp_path / str(i))
    print(f"{path.name}: {elapsed:.1f} s")


def check_picture(data, where, stem):
    """A notebook's picture opens: a PNG with Pillow, an SVG with an XML parser and, where
    it is installed, rsvg-convert (librsvg); either one has ink, in several colours."""
    from PIL import Image
    if "image/png" in data:
        png = stem.with_suffix(".png")
        png.write_bytes(base64.b64decode(data["image/png"]))
    else:
        text = data["image/svg+xml"]
        text = text if isinstance(text, str) else "".join(text)
        ET.fromstring(text)                 # well-formed, or ParseError names the line
        rsvg = shutil.which("rsvg-convert")
        if rsvg is None:
            return
        svg, png = stem.with_suffix(".svg"), stem.with_suffix(".png")
        svg.write_text(text, encoding="utf-8")
        done = subprocess.run([rsvg, str(svg), "-o", str(png)], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, f"{where}: rsvg-convert: {done.stderr.strip()}"
    with Image.open(png) as image:
        white = Image.new("RGBA", image.size, "white")
        flat = Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
    ink = sum(flat.convert("L").histogram()[:243]) / (flat.width * flat.height)
    assert ink > 0.002, f"{where}: blank ({ink:.4%} ink)"
    colours = flat.getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 3, f"{where}: {len(colours)} colours"
