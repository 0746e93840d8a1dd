"""Media loading: identify inputs from their content, decode them safely, and hand decoded media to encoders."""
from .audio import load_audio, decode_audio_stream
from .image import load_image
from .limits import DEFAULT_LIMITS, Limits
from .source import MODALITIES, Media, fetch_url, to_media
from .sniff import sniff
from .video import Frame, sample_frames, video_duration

__all__ = ["DEFAULT_LIMITS", "Frame", "Limits", "MODALITIES", "Media", "decode_audio_stream", "fetch_url",
           "load_audio", "load_image", "sample_frames", "sniff", "to_media", "video_duration"]
