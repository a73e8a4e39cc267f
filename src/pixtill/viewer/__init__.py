"""Look at a dataset: ``pixtill view`` (a local page or a static folder) and notebook galleries.

- `ViewerData.open(path)`: a pixtill output folder, a ``save_to_disk`` folder, Parquet files or a
  Hub dataset id, read a row group / Arrow batch at a time;
- `ViewerServer(data).start()`: serves it on 127.0.0.1 (aiohttp), returns the URL;
- `export_static(data, folder)`: the same page as a self-contained folder;
- `gallery(dataset)`: a small HTML gallery for notebooks (also `Distiset._repr_html_`).
"""

from pixtill.viewer.data import ViewerData
from pixtill.viewer.export import export_static
from pixtill.viewer.notebook import gallery, gallery_html
from pixtill.viewer.server import ViewerServer
from pixtill.viewer.source import SourceError, open_source

__all__ = [
    "SourceError",
    "ViewerData",
    "ViewerServer",
    "export_static",
    "gallery",
    "gallery_html",
    "open_source",
]
