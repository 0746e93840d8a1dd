"""Media fixtures: small images, audio and videos generated into temporary folders (PIL, numpy, ffmpeg, espeak-ng),
plus a loopback HTTP server. Everything is built once per session and only when a test asks for it."""
from __future__ import annotations

import http.server
import io
import shutil
import struct
import subprocess
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SIZE = 64          # side of generated images and video frames
VIDEO_FPS = 10     # frame rate of generated videos
SR = 16000         # sample rate of generated audio (the CLAP space resamples to 48 kHz)


# ---- helpers (plain functions, usable from tests) ------------------------------------------------------------------
def need_ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        pytest.skip("ffmpeg is not installed; it is needed to generate audio and video test files")
    return exe


def ffmpeg(*args: str, stdin: bytes | None = None) -> None:
    cmd = [need_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)]
    subprocess.run(cmd, check=True, input=stdin, capture_output=True)


def pattern(seed: int = 0, size: int = SIZE) -> np.ndarray:
    """An RGB uint8 image with structure (gradients, a square, noise) so that decoders and models see content."""
    rs = np.random.RandomState(seed)
    y, x = np.mgrid[0:size, 0:size]
    img = np.stack([x * 255 // (size - 1), y * 255 // (size - 1), ((x + y) * 127 // (size - 1))], -1).astype(np.int32)
    a, b = rs.randint(0, size // 2, 2)
    img[a:a + size // 3, b:b + size // 3] = rs.randint(0, 256, 3)
    img += rs.randint(-12, 13, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def checker(size: int = SIZE, cell: int = 8, c0=(0, 0, 0), c1=(255, 255, 255)) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    on = ((x // cell + y // cell) % 2).astype(bool)
    out = np.empty((size, size, 3), np.uint8)
    out[~on], out[on] = c0, c1
    return out


def timecoded_frame(second: float, size: int = SIZE) -> np.ndarray:
    """Left half: a grey level that encodes the second (20 + 10*s); right half: a fixed checkerboard, so no frame
    is ever blank. `grey_level(frame)` reads the second back."""
    f = checker(size)
    f[:, : size // 2] = min(235, int(20 + 10 * int(second)))
    return f


def grey_level(image) -> float:
    a = np.asarray(image.convert("L") if hasattr(image, "convert") else image, dtype=np.float64)
    h, w = a.shape[:2]
    return float(a[h // 4: 3 * h // 4, w // 8: 3 * w // 8].mean())


def write_video(path: Path, frames: list[np.ndarray], fps: int = VIDEO_FPS, *, sound: bool = False,
                vcodec: tuple[str, ...] = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"),
                extra: tuple[str, ...] = ()) -> Path:
    """Encode RGB frames with ffmpeg (keyframe every 25 frames); optionally with a 440 Hz AAC sound track."""
    h, w = frames[0].shape[:2]
    raw = b"".join(np.ascontiguousarray(f, dtype=np.uint8).tobytes() for f in frames)
    args = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-"]
    if sound:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={SR}:duration={len(frames) / fps}",
                 "-c:a", "aac", "-shortest"]
    ffmpeg(*args, *vcodec, "-g", "25", *extra, str(path), stdin=raw)
    return path


def write_sine(path: Path, seconds: float, *, sr: int = SR, freq: float = 440.0, codec: tuple[str, ...] = ()) -> Path:
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency={freq}:sample_rate={sr}:duration={seconds}", *codec, str(path))
    return path


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A real, valid 1-bit greyscale PNG of width x height black pixels. Its rows compress ~1000:1, so a
    20000x20000 image is a ~50 KB file that would decode to 400 million pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (width + 7) // 8)       # filter byte 0, then packed 1-bit pixels
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def gif_bomb(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A GIF whose logical screen is width x height (decoders allocate the whole canvas) holding one tiny frame."""
    buf = io.BytesIO()
    Image.new("P", (1, 1)).save(buf, "GIF")
    data = bytearray(buf.getvalue())
    data[6:10] = struct.pack("<HH", width, height)   # logical screen descriptor
    path.write_bytes(bytes(data))
    return path


class Gen:
    """The helpers above, handed to tests through the `gen` fixture (test modules cannot import a conftest
    reliably: every test folder has one and they share the module name)."""

    SIZE, VIDEO_FPS, SR = SIZE, VIDEO_FPS, SR
    ffmpeg = staticmethod(ffmpeg)
    need_ffmpeg = staticmethod(need_ffmpeg)
    pattern = staticmethod(pattern)
    checker = staticmethod(checker)
    timecoded_frame = staticmethod(timecoded_frame)
    grey_level = staticmethod(grey_level)
    write_video = staticmethod(write_video)
    write_sine = staticmethod(write_sine)
    png_bomb = staticmethod(png_bomb)
    gif_bomb = staticmethod(gif_bomb)


@pytest.fixture(scope="session")
def gen() -> type[Gen]:
    return Gen


# ---- session fixtures ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


IMAGE_FORMATS = {  # name: (suffix, PIL save kwargs, mime, lossless); test_images.py lists the same names
    "jpeg": (".jpg", {"quality": 95}, "image/jpeg", False),
    "png": (".png", {}, "image/png", True),
    "webp": (".webp", {"lossless": True}, "image/webp", True),
    "gif": (".gif", {}, "image/gif", False),
    "bmp": (".bmp", {}, "image/bmp", True),
    "tiff": (".tiff", {}, "image/tiff", True),
}
Gen.IMAGE_FORMATS = IMAGE_FORMATS


@pytest.fixture(scope="session")
def image_files(media_dir) -> dict[str, Path]:
    """The same 64x64 pattern saved in every supported still-image format."""
    im = Image.fromarray(pattern(0))
    out = {}
    for fmt, (suffix, kw, _, _) in IMAGE_FORMATS.items():
        out[fmt] = media_dir / f"pattern{suffix}"
        im.save(out[fmt], **kw)
    return out


@pytest.fixture(scope="session")
def png_path(image_files) -> Path:
    return image_files["png"]


@pytest.fixture(scope="session")
def jpeg_path(image_files) -> Path:
    return image_files["jpeg"]


@pytest.fixture(scope="session")
def other_pngs(media_dir) -> list[Path]:
    out = []
    for seed in range(1, 6):
        out.append(media_dir / f"other{seed}.png")
        Image.fromarray(pattern(seed)).save(out[-1])
    return out


@pytest.fixture(scope="session")
def big_jpeg(media_dir) -> Path:
    """4000x3000 JPEG with real content (an upscaled noise image), ~2 MB."""
    path = media_dir / "big.jpg"
    small = Image.fromarray((np.random.RandomState(3).rand(300, 400, 3) * 255).astype(np.uint8))
    small.resize((4000, 3000), Image.BILINEAR).save(path, quality=85)
    return path


@pytest.fixture(scope="session")
def png_bomb_file(media_dir) -> Path:
    return png_bomb(media_dir / "bomb.png", 20000, 20000)


@pytest.fixture(scope="session")
def gif_bomb_file(media_dir) -> Path:
    return gif_bomb(media_dir / "bomb.gif")


# audio
@pytest.fixture(scope="session")
def audio_files(media_dir) -> dict[str, Path]:
    """A 3 s 440 Hz sine at 16 kHz as wav, flac, ogg (Vorbis), mp3, opus and m4a (AAC)."""
    wav = write_sine(media_dir / "sine.wav", 3.0)
    out = {"wav": wav}
    for ext, codec in [("flac", ()), ("ogg", ("-c:a", "libvorbis")), ("mp3", ("-c:a", "libmp3lame")),
                       ("opus", ("-c:a", "libopus")), ("m4a", ("-c:a", "aac"))]:
        out[ext] = media_dir / f"sine.{ext}"
        ffmpeg("-i", wav, *codec, out[ext])
    return out


@pytest.fixture(scope="session")
def wav_path(audio_files) -> Path:
    return audio_files["wav"]


@pytest.fixture(scope="session")
def long_wav(media_dir) -> Path:
    """25 s: longer than the tiny CLAP window of 10 s. A chirp-free tone with a few steps so windows differ."""
    import soundfile as sf

    t = np.arange(25 * SR) / SR
    freq = np.where(t < 10, 300.0, np.where(t < 20, 900.0, 2000.0))
    wave = (0.3 * np.sin(2 * np.pi * np.cumsum(freq) / SR)).astype(np.float32)
    path = media_dir / "long.wav"
    sf.write(path, wave, SR, subtype="PCM_16")
    return path


@pytest.fixture(scope="session")
def speech_wav(media_dir) -> Path:
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed")
    path = media_dir / "speech.wav"
    subprocess.run([exe, "-w", str(path), "omnivec embeds text, images, audio and video"], check=True,
                   capture_output=True)
    return path


# video
@pytest.fixture(scope="session")
def video_20s(media_dir) -> Path:
    """20 s, 10 fps, 64x64, keyframe every 2.5 s; each second is time-coded (see timecoded_frame)."""
    frames = [timecoded_frame(i // VIDEO_FPS) for i in range(20 * VIDEO_FPS)]
    return write_video(media_dir / "timecoded20.mp4", frames)


@pytest.fixture(scope="session")
def video_with_sound(media_dir) -> Path:
    frames = [timecoded_frame(i // VIDEO_FPS) for i in range(4 * VIDEO_FPS)]
    return write_video(media_dir / "with_sound.mp4", frames, sound=True)


@pytest.fixture(scope="session")
def silent_video(media_dir) -> Path:
    frames = [timecoded_frame(i // VIDEO_FPS) for i in range(4 * VIDEO_FPS)]
    return write_video(media_dir / "silent.mp4", frames)


@pytest.fixture(scope="session")
def black_video(media_dir) -> Path:
    return write_video(media_dir / "black.mp4", [np.zeros((SIZE, SIZE, 3), np.uint8)] * (3 * VIDEO_FPS))


@pytest.fixture(scope="session")
def audio_only_mp4(media_dir) -> Path:
    """An MP4 (major brand isom, so it sniffs as video) that holds only an AAC sound track."""
    path = media_dir / "audio_only.mp4"
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={SR}:duration=2", "-c:a", "aac", path)
    return path


@pytest.fixture(scope="session")
def truncated_mp4(media_dir, video_with_sound) -> Path:
    data = video_with_sound.read_bytes()
    path = media_dir / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])   # ffmpeg writes the index (moov) last: it is cut off
    return path


# ---- loopback HTTP server ------------------------------------------------------------------------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802 - http.server's naming
        path = self.path.split("?")[0]
        if path == "/slow":
            time.sleep(3.0)
        if path.startswith("/stream/"):  # no Content-Length: the size cap must be enforced while reading
            body = self.routes.get(path.removeprefix("/stream"))
            if body is None:
                return self.send_error(404)
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            for i in range(0, len(body), 4096):
                self.wfile.write(body[i:i + 4096])
            return
        body = self.routes.get(path, b"ok" if path == "/slow" else None)
        if body is None:
            return self.send_error(404)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, *args):  # keep test output clean
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client that timed out and hung up is expected
        pass


@pytest.fixture(scope="session")
def http_server(png_path, wav_path):
    """A server on 127.0.0.1 only. Routes: /image.png, /sound.wav, /stream/<route> (no Content-Length),
    /slow (sleeps 3 s before answering), anything else 404. Yields (base_url, routes); tests may add routes."""
    routes = {"/image.png": png_path.read_bytes(), "/sound.wav": wav_path.read_bytes()}
    handler = type("Handler", (_Handler,), {"routes": routes})
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="test-http")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", routes
    finally:
        server.shutdown()
        server.server_close()
