"""A folder of one's own photos, as a new user has one: real CMP Facade photos (mostly portrait, of many sizes) and
CamVid street scenes (landscape) straight in one flat folder, one of them EXIF-rotated, one grayscale, one CMYK.
"""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

from PIL import Image

EXIF_ORIENTATION = 0x0112
ROTATED_90 = 6  # EXIF: the stored pixels are to be turned 90 degrees clockwise for display


def _photos(archive: Path, suffix: str, count: int) -> list[tuple[str, bytes]]:
    """The first ``count`` files ending in ``suffix`` of ``archive`` (name, bytes), in sorted order."""
    with tarfile.open(archive) as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.endswith(suffix)
                          and "annot" not in m.name), key=lambda m: m.name)[:count]
        return [(Path(m.name).name, tar.extractfile(m).read()) for m in members]


def write_photo_folder(data_root: Path, folder: Path, facades: int = 16, streets: int = 8) -> Path:
    """Write ``facades`` CMP Facade and ``streets`` CamVid photos into ``folder`` (flat): the first street scene
    stored sideways with an EXIF rotation, the second grayscale, the third CMYK. Returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, (_, data) in enumerate(_photos(data_root / "CMP_facade_DB_base.tar.gz", ".jpg", facades)):
        (folder / f"facade_{index:03d}.jpg").write_bytes(data)
    for index, (_, data) in enumerate(_photos(data_root / "CamVid.tar.gz", ".jpg", streets)):
        image = Image.open(io.BytesIO(data)).convert("RGB")
        target = folder / f"street_{index:03d}.jpg"
        if index == 0:
            exif = Image.Exif()
            exif[EXIF_ORIENTATION] = ROTATED_90
            image.transpose(Image.Transpose.ROTATE_90).save(target, exif=exif, quality=92)
        elif index == 1:
            image.convert("L").save(target, quality=92)
        elif index == 2:
            image.convert("CMYK").save(target, quality=92)
        else:
            image.save(target, quality=92)
    return folder
