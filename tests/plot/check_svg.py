"""check_svg.py SVG TITLE COUNTS - checks a figure's SVG from src/plot (run by test_plot).

COUNTS is the number of series per panel, e.g. "3,2". The file must be well-formed XML with an
<svg> root whose width/height match its viewBox, hold TITLE in <title>, list every series in
<desc>, and draw exactly one data path per series: a stroked path in the series' palette colour
at the data line width (1.75) with many segments (the legend swatches are 2 wide and one
segment long). Exit status 0 when all hold.
"""
import re
import sys
import xml.etree.ElementTree as ET

NS = "{http://www.w3.org/2000/svg}"
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def colour(style):
    m = re.search(r"stroke:rgb\(([\d.]+)%,([\d.]+)%,([\d.]+)%\)", style)
    return tuple(round(float(v) * 255 / 100) for v in m.groups()) if m else None


def main():
    path, title, counts = sys.argv[1], sys.argv[2], [int(c) for c in sys.argv[3].split(",")]
    failures = []

    def check(ok, what):
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            failures.append(what)

    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        check(False, "%s parses as XML: %s" % (path, e))
        return 1
    check(root.tag == NS + "svg", "root element is svg")
    vb = [float(v) for v in root.get("viewBox", "").split()]
    check(len(vb) == 4 and float(root.get("width")) == vb[2] and float(root.get("height")) == vb[3],
          "width/height %s x %s match the viewBox %s" % (root.get("width"), root.get("height"), vb))
    t = root.find(NS + "title")
    check(t is not None and t.text == title, "<title> is the figure's title: %r" % (t.text if t is not None else None))
    desc = root.find(NS + "desc")
    n_series = sum(1 for line in (desc.text or "").splitlines() if line.startswith("series: ")) if desc is not None else 0
    check(n_series == sum(counts), "<desc> lists %d series (want %d)" % (n_series, sum(counts)))
    data = {}
    for p in root.iter(NS + "path"):
        style = p.get("style", "")
        c = colour(style)
        if c in PALETTE and "stroke-width:1.75;" in style:
            segs = len(re.findall(r"\bL\b", p.get("d", "")))
            data.setdefault(c, []).append(segs)
    for i, c in enumerate(PALETTE):
        want = sum(1 for n in counts if n > i)
        got = data.get(c, [])
        check(len(got) == want and all(s >= 10 for s in got),
              "series %d (rgb%s): %d data paths (want %d), segments %s" % (i, c, len(got), want, got))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
