"""Launch: the training config as a form, presets, and sweeps over a few fields."""
import dataclasses
import json
import re

import streamlit as st

from common import open_in, prefetch, runs_root
from gancore import catalogue, launch, placement, setup, views
from gancore import config as C
from gancore.errors import GancoreError
from gancore.presets import PRESETS

# The form's sections; every TrainConfig field but name/runs_root/preset is in exactly one.
GROUPS = {
    "Data": ["dataset", "data_path", "image_size", "channels"],
    "Networks": ["model", "z_dim", "g_width", "d_width", "g_depth", "d_depth", "pad_to", "point_scale"],
    "Progressive growing": ["fade_images", "stable_images", "equalized_lr", "pixel_norm"],
    "Objective": ["loss", "clip_value", "gp_weight", "drift"],
    "Conditioning": ["conditioning", "embed_dim", "acgan_weight", "acgan_fake_weight"],
    "Stabilisers": ["sn_g", "sn_d", "r1_gamma", "grad_clip", "weight_decay", "d_dropout", "label_smoothing", "vbn",
                    "vbn_ref", "mbstd", "mbstd_group", "pack", "fm_weight", "diffaug"],
    "Schedule": ["steps", "batch_size", "n_critic", "optimizer", "lr_g", "lr_d", "beta1", "beta2", "lr_decay", "ema",
                 "ema_decay", "ema_rampup", "log_every", "sample_every", "ckpt_every"],
    "Evaluation": ["eval_every", "eval_n", "fid_backend", "eval_train_evaluator"],
    "Device": ["device", "precision", "compile", "seed"],
}
OPEN = {"Data", "Objective", "Conditioning", "Schedule"}  # sections shown expanded
CHOICES = catalogue.CHOICES  # the names alone: this page imports no torch (tests/test_structure.py)
# What the presets are for, in words (the keys are gancore.presets names).
PRESET_LABELS = {
    "": "No preset: the fields below as they are",
    "cgan-concat": "Conditional DCGAN on MNIST-5k (cgan-concat)",
    "dcgan-ns": "DCGAN, non-saturating, on MNIST-5k (dcgan-ns)",
    "acgan": "ACGAN on MNIST-5k (acgan)",
    "sngan-projection-hinge": "Hinge + spectral norm + projection D, ResNet (sngan-projection-hinge)",
    "wgan-gp-grid": "WGAN-GP on the 25-Gaussian grid (wgan-gp-grid)",
    "pacgan-ring": "PacGAN on the 8-Gaussian ring (pacgan-ring)",
    "pacgan-grid": "PacGAN on the 25-Gaussian grid (pacgan-grid)",
    "progressive-mnist": "Progressive growing, class-conditional MNIST-5k at 32 px (progressive-mnist)",
    "ring-lr-decay": "8-Gaussian ring, most points on the modes (ring-lr-decay)",
    "grid-lr-decay": "25-Gaussian grid, most points on the modes (grid-lr-decay)",
    "stacked-mnist-pacgan": "Stacked MNIST, 1,000 modes (stacked-mnist-pacgan)",
}
DEFAULTS = C.declared_defaults()  # 0 where a field is auto (beta1, eval_every: -1), as the help says
TYPES = {f.name: f.type for f in dataclasses.fields(C.TrainConfig)}
HELP = C.field_help()
# The number fields whose default means "auto": the form shows them empty, with the value they resolve to
AUTO_NUMBERS = {f for f, v in DEFAULTS.items() if TYPES[f] in (int, float) and v in (0, -1)
                and re.search(r"(^|\W)-?[01] = auto", HELP.get(f, ""))}


def set_form(fields: dict) -> None:
    """Put defaults overlaid with `fields` into the form's widgets (an auto number as an empty box)."""
    for group in GROUPS.values():
        for f in group:
            value = fields.get(f, DEFAULTS[f])
            st.session_state[f"f_{f}"] = None if f in AUTO_NUMBERS and value == DEFAULTS[f] else value


def form_fields() -> dict:
    """The form's fields that differ from the defaults (an empty auto box is left out: auto)."""
    fields = {f: st.session_state.get(f"f_{f}") for names in GROUPS.values() for f in names}
    return {k: v for k, v in fields.items() if v is not None and v != DEFAULTS[k]}


@st.cache_data(max_entries=64, show_spinner=False)
def resolved(fields_json: str) -> dict | None:
    """What the auto fields of these form fields resolve to (the trainer's own resolution), or None when the fields
    are refused (Launch then says why). An embedded dataset is resolved from its declared facts, without torch
    (setup.preview); a set read from a path, once a path is given, by reading it (launch.check_config)."""
    fields = json.loads(fields_json)
    preview = setup.preview(fields)
    if preview is not None:
        return preview.to_dict()
    if fields.get("data_path"):
        try:
            return launch.check_config(fields).to_dict()
        except GancoreError:
            return None
    return None


def auto_text(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def apply_preset() -> None:
    name = st.session_state["preset_pick"]
    set_form(PRESETS.get(name, {}))


def parse_sweep(text: str) -> dict[str, list]:
    """'loss = nonsaturating, hinge' lines -> {"loss": ["nonsaturating", "hinge"]}, values typed by the field."""
    grid = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if "=" not in line:
            raise C.ConfigError(f"sweep line {n}: expected `field = value, value, ...`, got {line.strip()!r}")
        key, values = (s.strip() for s in line.split("=", 1))
        if key not in TYPES or key in ("name", "runs_root", "preset"):
            raise C.ConfigError(f"sweep line {n}: {key!r} is not a config field that can be swept")
        grid[key] = [C.coerce(key, v.strip()) for v in values.split(",") if v.strip()]
        if not grid[key]:
            raise C.ConfigError(f"sweep line {n}: no values for {key}")
    return grid


def widget(f: str, auto: dict | None):
    """The field's input; an auto number is an empty box showing "auto: <what it resolves to>" (`auto`: the
    resolved config of the form as it stands, None when it is refused)."""
    key, label, help = f"f_{f}", f, HELP.get(f)
    placeholder = None
    if f in AUTO_NUMBERS:  # "auto" alone where the value is known only once the data is read (points' std: None)
        placeholder = f"auto: {auto_text(auto[f])}" if auto and auto.get(f) is not None else "auto"
    if f in CHOICES:
        st.selectbox(label, CHOICES[f], key=key, help=help)
    elif TYPES[f] is bool:
        st.checkbox(label, key=key, help=help)
    elif TYPES[f] is int:
        st.number_input(label, step=1, key=key, help=help, placeholder=placeholder)
    elif TYPES[f] is float:
        small = f.startswith("lr") or f in ("weight_decay",)
        st.number_input(label, step=1e-5 if small else 0.01, format="%g", key=key, help=help,
                        placeholder=placeholder)
    else:
        st.text_input(label, key=key, help=help)
    field, message = st.session_state.get("form_error") or (None, None)
    if field == f:  # the refusal of the last Launch, at the field it names
        st.error(message, icon=":material/error:")


def field_error(message: str) -> tuple[str | None, str]:
    """(the form field a refusal names, the message in the form's words): "--steps: must be > 0" ->
    ("steps", "steps: must be > 0"); (None, message) when it names no field of the form."""
    m = re.match(r"--(\w+): (.*)", message, re.S)
    if m and any(m.group(1) in names for names in GROUPS.values()):
        return m.group(1), f"{m.group(1)}: {m.group(2)}"
    return None, message


if "f_dataset" not in st.session_state:
    set_form({})
if "clone_fields" in st.session_state:  # "Clone into Launch" on the Runs page
    cloned = st.session_state.pop("clone_fields")
    set_form(PRESETS.get(cloned.get("preset", ""), {}) | cloned)
    st.session_state["preset_pick"] = ""
    st.info("Cloned: the form holds that run's settings. Change what you want and launch.")

st.title("Launch")
st.selectbox("Start from", [""] + list(PRESETS), format_func=lambda k: PRESET_LABELS.get(k, k), key="preset_pick",
             on_change=apply_preset, help="fills the form with a preset that is known to work (docs/benchmarks.md)")

# Not an st.form: every change reruns the page, so the auto fields show what they resolve to for the data chosen
with st.container(border=True):
    name = st.text_input("Run name (optional)", key="f_name",
                         help="letters, digits, '.', '_', '-'; empty = <dataset>-<model>-<loss>-<time>")
    error_field = (st.session_state.get("form_error") or (None,))[0]
    auto = resolved(json.dumps(form_fields(), sort_keys=True, default=str))
    st.caption("Empty boxes are auto: each shows the value it takes for these settings.")
    for group, names in GROUPS.items():
        with st.expander(group, expanded=group in OPEN or error_field in names):
            for start in range(0, len(names), 4):  # rows of four, so a checkbox never shifts the row below
                for col, f in zip(st.columns(4), names[start:start + 4]):
                    with col:
                        widget(f, auto)
    with st.expander("Sweep (optional): the cross-product of a few fields"):
        sweep_text = st.text_area("One field per line", key="sweep_text",
                                  placeholder="loss = nonsaturating, hinge\nseed = 0, 1, 2",
                                  help="every combination becomes one run; the form gives the other fields")
        max_parallel = st.number_input("Runs training at once", min_value=1, max_value=64,
                                       value=placement.default_parallel(), key="max_parallel",
                                       help="the rest wait their turn in the queue. Default: one per GPU; on "
                                       "CPUs one per core, each run with its share of the cores (measured "
                                       "fastest in total, docs/benchmarks.md)")
    processes = st.number_input("Processes", min_value=1, max_value=64, value=launch.default_processes(),
                                key="processes", help="training processes for this run, under torchrun (one per "
                                "GPU; on a CPU they share the cores); batch_size is split over them. Sweeps "
                                "train each run in one process. Each run gets GPUs of its own (it waits in "
                                "the queue while all are busy), or its share of the CPU cores")
    submitted = st.button("Launch", type="primary", icon=":material/rocket_launch:")

if submitted:
    fields = form_fields()
    if name.strip():
        fields["name"] = name.strip()
    try:
        grid = parse_sweep(sweep_text)
        if grid:
            paths = launch.launch_sweep(fields, grid, runs_root(), int(max_parallel))
        else:
            paths = [launch.launch(fields, runs_root(), processes=int(processes))]
    except GancoreError as e:
        field, message = field_error(str(e))
        if field:  # drawn at the field: the form again, with the message under it
            st.session_state["form_error"] = (field, message)
            st.session_state["launched"] = None
            st.rerun()
        if st.session_state.get("form_error"):  # an earlier refusal at a field: this one replaces it
            st.session_state["form_error"], st.session_state["launch_refusal"] = None, message
            st.rerun()
        st.error(message, icon=":material/error:")
    else:
        st.session_state["form_error"] = None
        st.session_state["launched"] = [p.name for p in paths]
        st.session_state["run"] = paths[0].name

if st.session_state.get("launch_refusal"):  # a refusal that names no field, after a rerun that cleared one
    st.error(st.session_state.pop("launch_refusal"), icon=":material/error:")
if st.session_state.get("launched"):
    launched = st.session_state["launched"]
    st.success(f"Launched {len(launched)} run{'s' if len(launched) > 1 else ''}: " + ", ".join(launched))
    queued = [r for r in views.run_rows(runs_root()) if r["run"] in launched and r["waiting"]]
    if queued:
        st.info(f"{len(queued)} of them {queued[0]['placement']}; each starts by itself when one frees up.",
                icon=":material/schedule:")
    c1, c2 = st.columns(2)
    if c1.button("Watch it in Monitor", icon=":material/monitoring:"):
        open_in("monitor", launched[0])
    if c2.button("See all runs", icon=":material/list:"):
        open_in("runs")

# What the Launch button will import (checking the fields against the data: a second or more for torch), loaded
# while the form is being filled in; this page itself imports no torch. From the page's second run on (the first
# change to the form), so that its first drawing does not share the interpreter with the imports.
if st.session_state.get("launch_drawn"):
    prefetch("torch")
st.session_state["launch_drawn"] = True
