"""The ``mbtiles`` and ``pmtiles`` processes: an item, collection or saved search as a tile archive.

``prepare`` (worker, database; ``planning.py``) resolves the source to items, the export's
region (their footprints within ``bbox``) and zooms, and refuses more than
``ExportSettings.max_tiles``. ``execute`` (child process; ``rendering.py``) renders the
region's tiles in forked processes and writes them in order. Tiles are rendered by the
functions the tile endpoints run (``tiler/render.py``), so an archive tile is byte for byte
the endpoint's; tiles whose pixels are all masked are left out. The archive is built in the
storage's local tmp folder and published under the key ``exports/<job id>.<ext>`` only once
complete (``files.py``; a rename in a local folder, an upload to object storage): a cancel
(SIGTERM) deletes it, a kill leaves it to the tmp sweep, and nothing partial is ever
published.

- ``inputs.py``: settings, inputs, errors and the process description.
- ``planning.py``: ``ExportPlanner``, the worker's side.
- ``rendering.py``: the child's side: render processes, ``write_tiles``.
- ``files.py``: where archives are published, and the sweep of orphaned ones.
- ``processes.py``: the Process plugins, ``export_processes``.
"""

from ..settings import ExportSettings
from .files import archive_key, sweep_exports
from .inputs import ExportRequest, NoData, TooManyItems, TooManyTiles
from .planning import attribution
from .processes import ExportProcess, MBTilesProcess, PMTilesProcess, export_processes
from .rendering import write_tiles

__all__ = [
    "ExportProcess",
    "ExportRequest",
    "ExportSettings",
    "MBTilesProcess",
    "NoData",
    "PMTilesProcess",
    "TooManyItems",
    "TooManyTiles",
    "archive_key",
    "attribution",
    "export_processes",
    "sweep_exports",
    "write_tiles",
]
