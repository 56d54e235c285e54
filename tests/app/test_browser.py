"""The demo in a real browser: headless Chromium (selenium + the distribution's chromedriver) runs an
example and the three output panels render. A screenshot is kept under ``test-artifacts/``."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rs2sam2 import app as logic
from rs2sam2.predictor import RS2SAM2Predictor
from rs2sam2.testing import register_app_predictor

from .conftest import build_tiny_predictor, median_probability

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PANELS = ("panel-prompt", "panel-features", "panel-mask")
IMAGES_PER_PANEL = {"panel-prompt": 2, "panel-features": 2, "panel-mask": 1}


def _find(name: str) -> str | None:
    for candidate in (name, f"/usr/bin/{name}", f"/usr/lib/chromium/{name}"):
        found = shutil.which(candidate)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> Iterator[RS2SAM2Predictor]:
    p = build_tiny_predictor(tmp_path_factory.mktemp("tokenizer"))
    register_app_predictor(logic.BUNDLED_MODEL_ID, p)
    yield p
    logic.clear_predictors()


@pytest.fixture()
def driver():
    chromium = _find("chromium") or _find("chromium-browser") or _find("google-chrome")
    chromedriver = _find("chromedriver")
    if chromium is None or chromedriver is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="rs2sam2-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--window-size=1600,2200",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    d = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    d.set_page_load_timeout(60)
    yield d
    d.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _rendered_images(driver, panel: str) -> int:
    """Images served by the app (``/file=…``) in a panel that finished loading with real pixels."""
    return driver.execute_script(
        "return [...document.querySelectorAll(`#${arguments[0]} img`)]"
        ".filter(i => i.complete && i.naturalWidth > 0 && i.src.includes('/file=')).length;",
        panel,
    )


def test_example_renders_three_panels(driver, server, predictor, example):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    image, text = example
    wait = WebDriverWait(driver, 60)
    driver.get(server)
    run = wait.until(ec.element_to_be_clickable((By.ID, "segment")))
    examples = logic.load_examples()
    if examples:  # click the first example of demo/examples.json
        cell = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#examples tbody tr td")))
        assert text in driver.find_element(By.ID, "examples").text
        cell.click()
    else:  # no examples shipped yet: the same input, uploaded by hand
        driver.find_element(By.CSS_SELECTOR, "#image-file input[type=file]").send_keys(image)
        driver.find_element(By.CSS_SELECTOR, "#expression textarea").send_keys(text)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "app-example.png"
    try:
        wait.until(lambda d: "pixels" in d.find_element(By.TAG_NAME, "body").text)  # the preview ran
        # a threshold that gives a visible mask with the random test model
        slider_box = driver.find_element(By.CSS_SELECTOR, "#threshold input[type=number]")
        slider_box.send_keys(Keys.CONTROL, "a")
        slider_box.send_keys(f"{median_probability(predictor, image, text):.2f}", Keys.ENTER)
        run.click()
        wait.until(lambda d: "Confidence" in d.find_element(By.ID, "panel-mask").text)
        wait.until(lambda d: all(_rendered_images(d, p) >= IMAGES_PER_PANEL[p] for p in PANELS))
    finally:  # kept on failure too: it shows what the page looked like
        driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    for panel in PANELS:
        assert _rendered_images(driver, panel) >= IMAGES_PER_PANEL[panel], panel
    assert "Mask (PNG, native size)" in driver.find_element(By.ID, "panel-mask").text
