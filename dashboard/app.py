"""gancore's dashboard: `streamlit run dashboard/app.py` (from the repository root).

Launch runs, watch them live, compare them and sample them. It only reads run directories
(docs/ARCHITECTURE.md) under $GANCORE_RUNS (default ./runs) and starts training as separate
processes (gancore/launch.py), so runs outlive the browser tab and the dashboard itself.
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for p in (HERE.parent, HERE):  # gancore and common.py importable however streamlit was started
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import streamlit as st  # noqa: E402

import common  # noqa: E402

st.set_page_config(page_title="gancore", page_icon=":material/blur_on:", layout="wide")

PAGE_LIST = [  # (file stem, title, icon)
    ("runs", "Runs", ":material/list:"),
    ("launch", "Launch", ":material/rocket_launch:"),
    ("monitor", "Monitor", ":material/monitoring:"),
    ("compare", "Compare", ":material/compare_arrows:"),
    ("samples", "Samples", ":material/grid_view:"),
    ("mode_collapse", "Mode collapse", ":material/scatter_plot:"),
]
common.PAGES.update({stem: st.Page(HERE / "pages" / f"{stem}.py", title=title, icon=icon, default=stem == "runs")
                     for stem, title, icon in PAGE_LIST})
page = st.navigation(list(common.PAGES.values()))
st.sidebar.caption(f"Runs root: `{common.runs_root()}`")
page.run()
