"""Take the README's screenshot of `pixtill view` (docs/viewer.png) with headless Chromium.

    .venv/bin/python scripts/screenshot_viewer.py [--output docs/viewer.png]

It builds a small dataset like a caption-then-paint run writes (source images, captions,
generated images, a score, token counts, one failed row), serves it with the viewer, and
saves a screenshot of the page, reduced to a palette so the file stays small. Needs Debian's
chromium and chromium-driver (scripts/setup.sh installs them) and selenium (dev extra).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from pixtill.distiset import Distiset
from pixtill.viewer import ViewerData, ViewerServer

ROWS = [  # shape, colour, background, caption, score
    ("circle", (220, 40, 40), (245, 245, 245), "A red circle centred on a white background.", 0.91),
    ("square", (40, 80, 220), (250, 235, 200), "A blue square on a cream background.", 0.88),
    ("triangle", (40, 170, 60), (30, 30, 30), "A green triangle pointing up on black.", 0.84),
    ("circle", (245, 140, 30), (40, 60, 90), None, None),
    ("square", (140, 60, 180), (230, 230, 230), "A purple square, slightly off centre.", 0.62),
]


def draw(
    shape: str,
    colour: tuple[int, int, int],
    background: tuple[int, int, int],
    size: int,
    jitter: int = 0,
) -> bytes:
    image = Image.new("RGB", (size, size), background)
    d = ImageDraw.Draw(image)
    a, b = size // 4 + jitter, 3 * size // 4 + jitter
    if shape == "circle":
        d.ellipse((a, a, b, b), fill=colour)
    elif shape == "square":
        d.rectangle((a, a, b, b), fill=colour)
    else:
        d.polygon([(size // 2, a), (b, b), (a, b)], fill=colour)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def build_dataset(folder: Path) -> Path:
    import datasets

    columns: dict[str, list[Any]] = {
        k: []
        for k in (
            "image",
            "caption",
            "generated_image",
            "clip_score",
            "model_name",
            "model_name_paint",
            "pixtill_metadata",
        )
    }
    for i, (shape, colour, background, caption, score) in enumerate(ROWS):
        failed = caption is None
        columns["image"].append({"bytes": draw(shape, colour, background, 160), "path": None})
        columns["caption"].append(caption)
        columns["generated_image"].append(
            None if failed else {"bytes": draw(shape, colour, background, 256, 12), "path": None}
        )
        columns["clip_score"].append(score)
        columns["model_name"].append("Qwen/Qwen2.5-VL-3B-Instruct")
        columns["model_name_paint"].append("segmind/tiny-sd")
        columns["pixtill_metadata"].append(
            {
                "error_caption": "step 'caption': row 3, column 'image': request failed: HTTP 500"
                if failed
                else None,
                "statistics_caption": {
                    "input_tokens": 212 + i,
                    "output_tokens": 0 if failed else 14,
                },
            }
        )
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "caption": datasets.Value("string"),
            "generated_image": datasets.Image(),
            "clip_score": datasets.Value("float64"),
            "model_name": datasets.Value("string"),
            "model_name_paint": datasets.Value("string"),
            "pixtill_metadata": {
                "error_caption": datasets.Value("string"),
                "statistics_caption": {
                    "input_tokens": datasets.Value("int64"),
                    "output_tokens": datasets.Value("int64"),
                },
            },
        }
    )
    dataset = datasets.Dataset.from_dict(columns, features=features)
    Distiset(
        {
            "paint": dataset,
            "caption": dataset.remove_columns(["generated_image", "model_name_paint"]),
        }
    ).save_to_disk(folder)
    return folder


def screenshot(url: str, output: Path, width: int, height: int) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    os.environ.setdefault("SE_OFFLINE", "true")
    browser, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not browser or not driver_path:
        raise SystemExit(
            "needs chromium and chromedriver (apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--hide-scrollbars",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        driver.get(url)
        WebDriverWait(driver, 20).until(
            lambda d: d.execute_script(
                "const i = Array.from(document.querySelectorAll('#rows tbody img'));"
                "return document.body.dataset.ready && i.length && i.every(x => x.complete)"
            )
        )
        png = driver.get_screenshot_as_png()
    finally:
        driver.quit()
    image = Image.open(io.BytesIO(png)).convert("RGB")
    output.parent.mkdir(parents=True, exist_ok=True)
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(output, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, default=Path("docs") / "viewer.png")
    parser.add_argument("--width", type=int, default=1180)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pixtill-shot-") as tmp:
        folder = build_dataset(Path(tmp) / "caption-then-paint")
        data = ViewerData.open(folder)
        data.title = "pixtill-output/caption-then-paint"  # what a user would have typed
        with ViewerServer(data) as server:
            screenshot(server.url, args.output, args.width, args.height)
    print(f"wrote {args.output} ({args.output.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
