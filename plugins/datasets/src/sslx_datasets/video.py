"""Real video files as clips: decoded with PyAV (FFmpeg), resized, cut into
fixed-length clips, with their sound when asked.

Damaged data never stops a run: a packet FFmpeg cannot decode is skipped
and counted, and the counts go to the run's info (``Dataset.report``).
Frames are put on a regular time grid (``fps``: each grid time shows the
last frame decoded at or before it), so clips have a fixed duration even
when a file drops or repeats frames; audio is placed by its timestamps, so a
skipped audio packet leaves silence, not a shift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

import sslx
from sslx_datasets import store
from sslx_datasets.digits import check_split, frame_stats

if TYPE_CHECKING:
    import av

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".ogv", ".flv", ".wmv")


@dataclass
class Decoded:
    """One decoded file: ``frames`` ``(F, size, size, C)`` uint8 at ``fps``;
    ``audio`` mono float32 at the requested rate whose sample 0 is frame 0's
    time (None without audio); what was skipped; ``error`` when the file
    could not be opened at all."""

    frames: np.ndarray
    fps: float
    audio: np.ndarray | None
    has_audio: bool
    video_skipped: int = 0
    audio_skipped: int = 0
    error: str | None = None


def to_array(frame: av.VideoFrame, size: int, grayscale: bool) -> np.ndarray:
    """A frame resized so its short side is ``size``, centre-cropped to
    ``size`` x ``size``, as ``(size, size, C)`` uint8."""
    scale = size / min(frame.width, frame.height)
    width, height = max(size, round(frame.width * scale)), max(size, round(frame.height * scale))
    array = frame.to_ndarray(width=width, height=height, format="gray" if grayscale else "rgb24")
    top, left = (height - size) // 2, (width - size) // 2
    array = array[top : top + size, left : left + size]
    return array[..., None] if grayscale else array


def on_grid(times: list[float], count: int, fps: float) -> np.ndarray:
    """For each of ``count`` grid times ``times[0] + k / fps``, the index of
    the last frame shown at or before it (frames sorted by time)."""
    grid = times[0] + np.arange(count) / fps
    return np.searchsorted(np.asarray(times), grid + 1e-6, side="right") - 1


def place_audio(chunks: list[tuple[float, np.ndarray]], start: float, rate: int) -> np.ndarray:
    """Join audio chunks ``(time, samples)`` into one track whose sample 0 is
    at time ``start``: each chunk goes where its timestamp says (gaps left by
    skipped packets stay silent; samples before ``start`` are dropped)."""
    length = max((round((t - start) * rate) + len(x) for t, x in chunks), default=0)
    track = np.zeros(max(length, 0), dtype=np.float32)
    for t, x in chunks:
        at = round((t - start) * rate)
        if at < 0:
            x, at = x[-at:], 0
        track[at : at + len(x)] = x
    return track


def decode(path: Path, size: int, grayscale: bool, fps: float | None, sample_rate: int | None) -> Decoded:
    """Decode a video file (and its first audio stream when ``sample_rate`` is
    given), skipping and counting packets that fail to decode."""
    import av  # PyAV loads FFmpeg: only when a video is decoded

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        return Decoded(
            np.zeros((0, size, size, 1 if grayscale else 3), np.uint8),
            fps or 0.0,
            None,
            False,
            error=f"cannot open: {exc}",
        )
    with container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio and sample_rate else None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate) if audio else None
        pictures: list[tuple[float, np.ndarray]] = []
        sound: list[tuple[float, np.ndarray]] = []
        skipped = {"video": 0, "audio": 0}
        packets = container.demux(*[s for s in (video, audio) if s is not None])
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError:  # the container itself is damaged from here on (a cut file)
                skipped["video"] += 1
                break
            try:
                decoded = packet.decode()
            except av.error.FFmpegError:
                skipped[packet.stream.type] += 1
                continue
            for frame in decoded:
                if packet.stream is video:
                    pictures.append((float(frame.time), to_array(frame, size, grayscale)))
                else:
                    sound += [(float(out.time), out.to_ndarray()[0]) for out in resampler.resample(frame)]
        if resampler is not None and sound:
            end = sound[-1][0] + len(sound[-1][1]) / sample_rate
            sound += [(end, out.to_ndarray()[0]) for out in resampler.resample(None)]
        native = float(video.average_rate or video.guessed_rate or 25)
        has_audio = bool(container.streams.audio)
    rate = fps or native
    if not pictures:
        return Decoded(
            np.zeros((0, size, size, 1 if grayscale else 3), np.uint8),
            rate,
            None,
            has_audio,
            skipped["video"],
            skipped["audio"],
        )
    pictures.sort(key=lambda p: p[0])
    times = [t for t, _ in pictures]
    count = math.floor((times[-1] - times[0]) * rate + 0.5) + 1
    frames = np.stack([pictures[j][1] for j in on_grid(times, count, rate)])
    track = place_audio(sound, times[0], sample_rate) if audio is not None else None
    return Decoded(frames, rate, track, has_audio, skipped["video"], skipped["audio"])


class FolderClips(sslx.ClipSplit):
    """Clips cut from decoded videos: clip ``i`` is frames
    ``starts[i] : starts[i] + length`` of video ``sources[i]``; its audio
    (when loaded) the matching ``length / fps`` seconds."""

    def __init__(
        self,
        videos: list[np.ndarray],
        audio: list[np.ndarray] | None,
        names: list[str],
        sources: np.ndarray,
        starts: np.ndarray,
        length: int,
        fps: float,
        sample_rate: int | None,
        info: sslx.DataInfo,
    ):
        self.videos, self._audio, self.names = videos, audio, names
        self.sources, self.starts, self.length = sources, starts, length
        self.fps, self.sample_rate, self.info = fps, sample_rate if audio is not None else None, info
        self.labels = None

    def __len__(self) -> int:
        return len(self.starts)

    def frames(self, index: int) -> np.ndarray:
        s = self.starts[index]
        return self.videos[self.sources[index]][s : s + self.length]

    def audio(self, index: int) -> np.ndarray | None:
        if self._audio is None:
            return None
        samples = round(self.length / self.fps * self.sample_rate)
        begin = round(self.starts[index] / self.fps * self.sample_rate)
        out = np.zeros(samples, dtype=np.float32)
        piece = self._audio[self.sources[index]][begin : begin + samples]
        out[: len(piece)] = piece  # a track that ends early is padded with silence
        return out


def clip_starts(frames: int, length: int, stride: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Start frames of one video's train and test clips: its clips in time
    order, the last ``test_fraction`` of them (rounded) for test, and for
    train those that end before the first test clip begins (with overlapping
    clips, ``stride < length``, the few that straddle the boundary are dropped)."""
    starts = np.arange(0, frames - length + 1, stride)
    test = starts[len(starts) - round(len(starts) * test_fraction) :]
    train = starts[starts + length <= test[0]] if len(test) else starts
    return train, test


def evenly(count: int, limit: int | None) -> np.ndarray:
    """``limit`` indices spread evenly over ``range(count)`` (all when ``limit`` is None or larger)."""
    if limit is None or limit >= count:
        return np.arange(count)
    return np.linspace(0, count - 1, limit).round().astype(int)


class VideoFolder(sslx.Dataset):
    """Real videos cut into clips: files in a folder decoded with PyAV,
    resized (short side to ``size``, centre square), on a regular frame
    grid, optionally with their sound; unlabeled.

    By default reads the real clips that ``sslx data prepare clips`` puts in
    the data folder (vtest.avi, Megamind.avi, tree.avi, bigbuckbunny.mp4,
    bikes.mp4). Each video's last ``test_fraction`` of clips form the test
    split. Undecodable packets are skipped and counted (``report``).
    """

    name = "video_folder"

    class Params(sslx.Params):
        root: str | None = Field(
            None,
            description="Folder of video files (null: the data folder's clips/, filled by `sslx data prepare clips`).",
        )
        files: list[str] | None = Field(None, description="File names in root to use (null: every video file in root).")
        clip_length: int = Field(16, ge=1, description="Frames per clip.")
        stride: int | None = Field(
            None, ge=1, description="Frames between the starts of consecutive clips (null: clip_length)."
        )
        size: int = Field(
            64,
            ge=8,
            le=1024,
            description="Side of the square frames: the short side is resized to it, then the centre is cut.",
        )
        fps: float | None = Field(
            None,
            gt=0,
            description="Frames per second of the clips, by picking frames (null: the files' own rate, which must then agree).",
        )
        grayscale: bool = Field(False, description="Decode frames as 1-channel grayscale instead of RGB.")
        audio: bool = Field(False, description="Load each file's sound (every file must have an audio stream).")
        sample_rate: int = Field(
            16000, ge=1000, le=192000, description="Audio samples per second after resampling (with audio)."
        )
        test_fraction: float = Field(
            0.2, ge=0, lt=1, description="Share of each video's clips (its last ones) in the test split."
        )
        train_size: int | None = Field(
            None, ge=1, description="At most this many train clips, spread evenly (null: all)."
        )
        test_size: int | None = Field(
            None, ge=1, description="At most this many test clips, spread evenly (null: all)."
        )

    def __init__(self, params: Params):
        super().__init__(params)
        self._splits: dict[str, FolderClips] | None = None
        self._report: dict = {}

    def split(self, name: str) -> FolderClips:
        check_split(self.name, name)
        if self._splits is None:
            self._splits = self._load()
        return self._splits[name]

    def report(self) -> dict:
        """Per file: frames on the grid, skipped video and audio packets,
        seconds; and the total of skipped packets."""
        return self._report

    def _paths(self) -> list[Path]:
        p = self.params
        root = Path(p.root) if p.root else store.data_dir() / "clips"
        if not root.is_dir():
            if p.root:
                raise sslx.UserError(f"dataset.root: {root} is not a folder. Point it at a folder of video files.")
            raise store.missing_data("video_folder", root, "clips")
        if p.files is None:
            paths = sorted(f for f in root.iterdir() if f.suffix.lower() in VIDEO_EXTENSIONS and f.is_file())
            if not paths:
                raise sslx.UserError(f"dataset.root: no video files ({', '.join(VIDEO_EXTENSIONS)}) in {root}.")
            return paths
        missing = [f for f in p.files if not (root / f).is_file()]
        if missing:
            have = sorted(f.name for f in root.iterdir() if f.suffix.lower() in VIDEO_EXTENSIONS)
            raise sslx.UserError(
                f"dataset.files: {', '.join(missing)} not found in {root} (it has: "
                f"{', '.join(have) or 'no videos'}). Fix the names or run `sslx data prepare clips`."
            )
        return [root / f for f in p.files]

    def _decode_all(self) -> dict[str, Decoded]:
        p = self.params
        decoded = {
            path.name: decode(path, p.size, p.grayscale, p.fps, p.sample_rate if p.audio else None)
            for path in self._paths()
        }
        self._report = {
            "files": {
                n: {
                    "frames": len(d.frames),
                    "video_packets_skipped": d.video_skipped,
                    "audio_packets_skipped": d.audio_skipped,
                    "seconds": len(d.frames) / d.fps if d.fps else 0.0,
                    **({"error": d.error} if d.error else {}),
                }
                for n, d in decoded.items()
            },
            "packets_skipped": sum(d.video_skipped + d.audio_skipped for d in decoded.values()),
        }
        rates = {n: d.fps for n, d in decoded.items() if len(d.frames)}
        if len(set(rates.values())) > 1:
            raise sslx.UserError(
                f"video_folder: the files play at different rates ({', '.join(f'{n}: {r:g} fps' for n, r in rates.items())}) "
                f"and clips need one: set dataset.fps (e.g. {min(rates.values()):g}) to resample them all."
            )
        if p.audio:
            silent = [n for n, d in decoded.items() if not d.has_audio and not d.error]
            if silent:
                raise sslx.UserError(
                    f"video_folder: dataset.audio is true but {', '.join(silent)} has no audio stream: "
                    f"drop it from dataset.files, or set dataset.audio to false."
                )
        return decoded

    def _load(self) -> dict[str, FolderClips]:
        p = self.params
        decoded = self._decode_all()
        names = list(decoded)
        stride = p.stride or p.clip_length
        parts: dict[str, list[tuple[int, int]]] = {"train": [], "test": []}
        for f, name in enumerate(names):
            train, test = clip_starts(len(decoded[name].frames), p.clip_length, stride, p.test_fraction)
            parts["train"] += [(f, s) for s in train]
            parts["test"] += [(f, s) for s in test]
        if not parts["train"]:
            lengths = ", ".join(
                f"{n}: {len(d.frames)} frames" + (f" ({d.error})" if d.error else "") for n, d in decoded.items()
            )
            raise sslx.UserError(
                f"video_folder: no training clip of {p.clip_length} frames could be cut from the files "
                f"({lengths}). Use longer or readable files, or a smaller dataset.clip_length."
            )
        videos = [decoded[n].frames for n in names]
        audio = [decoded[n].audio for n in names] if p.audio else None
        used = [np.zeros(len(v), bool) for v in videos]
        for f, s in parts["train"]:
            used[f][s : s + p.clip_length] = True
        mean, std = frame_stats(np.concatenate([v[u] for v, u in zip(videos, used)]))
        info = sslx.DataInfo(
            channels=1 if p.grayscale else 3, image_size=(p.size, p.size), mean=mean, std=std, num_classes=None
        )
        fps = next(d.fps for d in decoded.values() if len(d.frames))
        splits = {}
        for split, limit in (("train", p.train_size), ("test", p.test_size)):
            chosen = np.array(parts[split], dtype=np.int64).reshape(-1, 2)[evenly(len(parts[split]), limit)]
            splits[split] = FolderClips(
                videos,
                audio,
                names,
                chosen[:, 0],
                chosen[:, 1],
                p.clip_length,
                fps,
                p.sample_rate if p.audio else None,
                info,
            )
        return splits
