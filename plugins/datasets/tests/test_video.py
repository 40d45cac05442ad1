"""video_folder on the real prepared clips (and damaged copies of them):
frame and clip counts, audio durations and its alignment, skipped packets
counted in the report, and the helpers against explicit references."""

from __future__ import annotations

import math
import shutil

import av
import numpy as np
import pytest
from sslx_datasets import store
from sslx_datasets.video import VideoFolder, clip_starts, decode, on_grid, place_audio, to_array

import sslx

AC3_FRAME = 1536 / 48000  # seconds of sound in one AC3 packet
AAC_FRAME = 1024 / 48000


@pytest.fixture
def clips(prepared):
    return prepared(*(f"clips/{name}" for name in store.CLIPS)) / "clips"


def stream_end(path, kind: str) -> float:
    """When a stream ends (start + duration), from the container's own
    metadata (the container's duration where the stream has none)."""
    with av.open(str(path)) as c:
        s = c.streams.audio[0] if kind == "audio" else c.streams.video[0]
        if s.duration is None:
            return c.duration / 1e6
        return float((s.start_time or 0) * s.time_base + s.duration * s.time_base)


def first_frame_time(path) -> float:
    with av.open(str(path)) as c:
        return min(float(f.time) for _, f in zip(range(8), c.decode(video=0)))


@pytest.mark.parametrize(
    "name,seconds,packet", [("Megamind.avi", 11.26, AC3_FRAME), ("bigbuckbunny.mp4", 5.31, AAC_FRAME)]
)
def test_real_audio_is_16khz_and_lasts_as_long_as_its_stream(clips, name, seconds, packet):
    d = decode(clips / name, 32, False, None, 16000)
    start = first_frame_time(clips / name)  # the track's sample 0 is the first frame's time
    end = start + len(d.audio) / 16000
    assert end == pytest.approx(stream_end(clips / name, "audio"), abs=packet)
    assert end == pytest.approx(seconds, abs=packet)
    assert np.abs(d.audio).max() <= 1 and np.abs(d.audio).std() > 0.01  # sound, in range


def test_megamind_has_one_bad_audio_packet_skipped_and_reported(clips):
    data = VideoFolder(
        VideoFolder.Params(files=["Megamind.avi", "bigbuckbunny.mp4"], audio=True, fps=8, clip_length=8, size=32)
    )
    train = data.split("train")
    assert train.sample_rate == 16000 and train.audio(0).shape == (16000,) and train.audio(0).dtype == np.float32
    report = data.report()
    assert report["files"]["Megamind.avi"]["audio_packets_skipped"] == 1
    assert report["files"]["bigbuckbunny.mp4"]["audio_packets_skipped"] == 0
    assert report["packets_skipped"] == 1
    assert report["files"]["Megamind.avi"]["frames"] == math.floor((11.26 - 0.0417) * 8 + 0.5) + 1


def test_vtest_has_795_frames_cut_into_16_frame_clips_split_80_20(clips):
    data = VideoFolder(VideoFolder.Params(files=["vtest.avi"], size=32, grayscale=True))
    train, test = data.split("train"), data.split("test")
    assert data.report()["files"]["vtest.avi"]["frames"] == 795
    assert data.report()["files"]["vtest.avi"]["seconds"] == pytest.approx(79.5)
    assert len(train) + len(test) == 795 // 16 and len(test) == round(0.2 * (795 // 16))
    assert train.fps == 10 and train.labels is None and train.info.channels == 1 and train.info.num_classes is None
    assert train.frames(0).shape == (16, 32, 32, 1) and train.image(0).shape == (32, 32, 1)
    assert train.starts.max() + 16 <= test.starts.min()  # test clips are the video's last ones
    # the clips are consecutive pieces of the decoded video
    video = decode(clips / "vtest.avi", 32, True, None, None).frames
    np.testing.assert_array_equal(test.frames(2), video[test.starts[2] : test.starts[2] + 16])
    x = np.concatenate([train.frames(i) for i in range(len(train))]).astype(np.float64) / 255
    assert train.info.mean == pytest.approx((x.mean(),)) and train.info.std == pytest.approx((x.std(),))


def test_a_lower_fps_picks_every_other_frame(clips):
    native = decode(clips / "vtest.avi", 16, True, None, None).frames
    half = decode(clips / "vtest.avi", 16, True, 5.0, None).frames
    assert len(half) == math.floor(79.4 * 5 + 0.5) + 1
    np.testing.assert_array_equal(half, native[::2][: len(half)])


def test_cut_files_decode_as_far_as_they_go(clips, tmp_path):
    for name in ("Megamind.avi", "bigbuckbunny.mp4"):
        data = (clips / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) * 6 // 10])
    shutil.copy(clips / "bikes.mp4", tmp_path)
    cut = VideoFolder(VideoFolder.Params(root=str(tmp_path), files=["Megamind.avi"], audio=True, clip_length=8))
    assert 50 < len(cut.split("train")) * 8 < 270 * 0.8  # part of the 270 frames
    assert 0 < cut.report()["files"]["Megamind.avi"]["frames"] < 270
    # an mp4 cut before its index cannot be opened: reported, and the other files still load
    mixed = VideoFolder(VideoFolder.Params(root=str(tmp_path), files=["bigbuckbunny.mp4", "bikes.mp4"]))
    assert len(mixed.split("train")) == round(250 // 16 * 0.8)
    assert "cannot open" in mixed.report()["files"]["bigbuckbunny.mp4"]["error"]
    assert mixed.report()["files"]["bigbuckbunny.mp4"]["frames"] == 0
    with pytest.raises(sslx.UserError, match="no training clip.*bigbuckbunny.mp4: 0 frames .cannot open"):
        VideoFolder(VideoFolder.Params(root=str(tmp_path), files=["bigbuckbunny.mp4"])).split("train")


def test_user_mistakes_say_what_to_do(clips, tmp_path, monkeypatch):
    with pytest.raises(sslx.UserError, match="vtest.avi has no audio stream.*set dataset.audio to false"):
        VideoFolder(VideoFolder.Params(files=["vtest.avi", "bigbuckbunny.mp4"], audio=True, fps=8, size=16)).split(
            "train"
        )
    with pytest.raises(sslx.UserError, match=r"different rates .*bikes.mp4: 25 fps.*set dataset.fps"):
        VideoFolder(VideoFolder.Params(files=["tree.avi", "bikes.mp4"], size=16)).split("train")
    with pytest.raises(sslx.UserError, match=r"dataset.files: nope.avi not found .*vtest.avi"):
        VideoFolder(VideoFolder.Params(files=["nope.avi"])).split("train")
    monkeypatch.setenv("SSLX_DATA_DIR", str(tmp_path))
    with pytest.raises(sslx.UserError, match=r"clips not found.*`sslx data prepare clips`"):
        VideoFolder(VideoFolder.Params()).split("test")


def test_frames_are_resized_by_their_short_side_then_centre_cropped():
    columns = np.tile(np.arange(80, dtype=np.uint8)[None, :, None] * 3, (40, 1, 3))  # 40 x 80, value = 3 * column
    out = to_array(av.VideoFrame.from_ndarray(columns, format="rgb24"), 20, False)
    assert out.shape == (20, 20, 3)
    centre_columns = 3 * (20 + 2 * np.arange(20) + 0.5)  # the middle 40 of 80 columns, halved
    np.testing.assert_allclose(out[10, :, 0], centre_columns, atol=4)
    assert to_array(av.VideoFrame.from_ndarray(columns, format="rgb24"), 20, True).shape == (20, 20, 1)


def test_grid_shows_the_last_frame_at_or_before_each_time():
    times = [0.0, 0.1, 0.35, 0.4, 0.9]  # a dropped frame near 0.2-0.3, a long still after 0.4
    picked = on_grid(times, 10, 10.0)
    expected = [max(j for j, t in enumerate(times) if t <= k / 10 + 1e-9) for k in range(10)]
    assert picked.tolist() == expected


def test_audio_chunks_go_where_their_timestamps_say():
    chunks = [
        (0.5, np.full(2, 9, np.float32)),
        (0.8, np.array([5, 6, 7], np.float32)),
        (1.1, np.ones(3, np.float32)),
        (1.6, np.full(2, 2, np.float32)),
    ]
    track = place_audio(chunks, start=1.0, rate=10)
    np.testing.assert_array_equal(track, [7, 1, 1, 1, 0, 0, 2, 2])  # early samples dropped, the gap stays silent


def test_test_clips_are_each_videos_last_and_train_clips_end_before_them():
    train, test = clip_starts(100, 16, 8, 0.25)
    assert test.tolist() == [64, 72, 80]  # of the 11 clips, the last round(2.75) = 3
    assert train.tolist() == [0, 8, 16, 24, 32, 40, 48]  # 56 would overlap the first test clip
    train, test = clip_starts(100, 16, 16, 0.2)
    assert train.tolist() == [0, 16, 32, 48, 64] and test.tolist() == [80]
