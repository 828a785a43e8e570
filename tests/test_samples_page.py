"""The Samples page (AppTest, on gancore's pretrained generator): the seed drives every section, the truncation
is named in every caption and file name, and the PNG comes at a chosen size."""
from streamlit.testing.v1 import AppTest

from conftest import ROOT

APP = str(ROOT / "dashboard" / "app.py")


def samples(runs_root) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("pages/samples.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def captions(at) -> list[str]:
    return [i.proto.imgs[0].caption for i in at.get("image")]


def test_the_seed_moves_the_interpolation_and_truncation_is_named(runs_root):
    at = samples(runs_root)
    assert any("z(seed 0) → z(seed 1)" in c for c in captions(at))
    at.number_input(key="samples_seed").set_value(7).run()
    assert any("z(seed 7) → z(seed 8)" in c for c in captions(at))
    assert any("seeds 7..9" in c for c in captions(at))  # the class morph agrees
    at.checkbox(key="samples_trunc_on").check().run()
    at.slider(key="samples_trunc").set_value(0.7).run()
    assert all(c.endswith(" · truncation 0.7") for c in captions(at))
    buttons = [b.proto for b in at.get("download_button")]
    assert buttons and all(b.label.startswith("Download PNG (") for b in buttons)


def test_the_png_size_is_chosen(runs_root):
    at = samples(runs_root)
    sizes = {}
    for scale in (1, 4):
        at.selectbox(key="samples_scale").set_value(scale).run()
        label = next(b.proto.label for b in at.get("download_button"))
        sizes[scale] = [int(v) for v in label.split("(")[1].split(" px")[0].split("×")]
    assert sizes[4] == [4 * sizes[1][0], 4 * sizes[1][1]]


def test_a_sample_beside_its_nearest_training_images(runs_root):
    at = samples(runs_root)
    at.selectbox(key="nn_class").set_value(3).run()
    at.number_input(key="nn_col").set_value(2).run()
    assert not at.exception
    strip = [c for c in captions(at) if c.startswith("first: the sample (class 3, column 2)")]
    assert strip and "its 8 nearest training images of that class" in strip[0]
    distances = [float(d) for d in strip[0].split("distances ")[1].split(". A sample")[0].split(", ")]
    assert len(distances) == 8 and distances == sorted(distances) and distances[0] > 0  # the demo copies nothing
