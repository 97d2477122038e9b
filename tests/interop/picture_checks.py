"""Helpers for the tests that open simxen's pictures with the tools people open them with:
rsvg-convert (librsvg, the renderer of GNOME's viewers, GIMP's SVG import and
``rsvg-convert`` in a pipeline) for SVG, Pillow for PNG."""

import subprocess
import xml.etree.ElementTree as ET

import pytest

SVG = "{http://www.w3.org/2000/svg}"


def svg_size(path_or_text):
    """``(width, height, root)`` of an SVG whose ``width``/``height`` are pixels, parsed
    by expat."""
    text = path_or_text if isinstance(path_or_text, str) else path_or_text.read_text("utf-8")
    root = ET.fromstring(text)
    assert root.tag == f"{SVG}svg"
    width, height = (float(root.get(k).removesuffix("pt").removesuffix("px"))
                     for k in ("width", "height"))
    if root.get("width").endswith("pt"):         # matplotlib writes points: 96 px a 72 pt inch
        width, height = width * 96 / 72, height * 96 / 72
    return width, height, root


def rsvg(tool, svg_path, png_path, *options):
    """rsvg-convert ``svg_path`` into ``png_path``; asserts it succeeded."""
    done = subprocess.run([tool, *options, str(svg_path), "-o", str(png_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{svg_path.name}: rsvg-convert: {done.stderr.strip()}"
    return png_path


def inked(png_path, *, min_ink=0.002, min_colours=2):
    """Open ``png_path`` with Pillow and assert it is a picture: a fair share of its
    pixels are not the background (white or transparent), in more than one colour.
    Returns Pillow's ``(width, height)``."""
    image_module = pytest.importorskip("PIL.Image")
    with image_module.open(png_path) as image:
        image.load()
        size = image.size
        rgba = image.convert("RGBA")
    white = image_module.new("RGBA", size, (255, 255, 255, 255))
    flat = image_module.alpha_composite(white, rgba).convert("RGB")
    # a histogram per channel: the share of pixels darker than 243 in any channel
    grey = flat.convert("L")
    ink = sum(grey.histogram()[:243]) / (size[0] * size[1])
    assert ink > min_ink, f"{png_path.name}: blank ({ink:.4%} ink)"
    colours = flat.getcolors(maxcolors=1 << 16)
    many = colours is None or len([c for n, c in colours if min(c) < 243]) >= min_colours
    assert many, f"{png_path.name}: {len(colours)} colours"
    return size
