"""Tiny models of each supported architecture, saved in the exact on-disk layout the hub uses.

The architectures are the real ones (transformers CLIPModel, SiglipModel, ClapModel; open_clip CLIP); only the
sizes are small and the weights random. Tokenizers: the real CLIP BPE (rebuilt from open_clip's shipped file), and
small BPE vocabularies trained here with the `tokenizers` library for SigLIP and CLAP (their real vocabularies are
not shipped in any package)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

CORPUS = [f"a {size} {colour} {shape} on {bg}" for size in ("small", "large", "tiny") for colour in
          ("red", "green", "blue", "yellow", "purple", "orange") for shape in ("circle", "square", "triangle")
          for bg in ("white", "black", "grey")] + ["the sound of a dog barking", "waves on the beach", "a bell rings"]


def tiny_hf_clip(out: Path, image_size: int = 32, seed: int = 0) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    from omnivec.train.tokenizer import write_clip_tokenizer

    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                         max_position_embeddings=77, vocab_size=49408),
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                           image_size=image_size, patch_size=8),
        projection_dim=32)
    CLIPModel(cfg).save_pretrained(out)
    write_clip_tokenizer(out)
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": image_size},
                                                                 crop_size={"height": image_size, "width": image_size}),
                              tokenizer=CLIPTokenizer.from_pretrained(out))
    processor.save_pretrained(out)
    return out


def _bpe_tokenizer(byte_level: bool):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders

    tok = Tokenizer(models.BPE(unk_token=None if byte_level else "<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False) if byte_level else pre_tokenizers.Metaspace()
    tok.decoder = decoders.ByteLevel() if byte_level else decoders.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] if byte_level else ["<pad>", "</s>", "<unk>"]
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if byte_level else [])
    tok.train_from_iterator(CORPUS * 3, trainer)
    return tok


def tiny_hf_siglip(out: Path, image_size: int = 32, seed: int = 0) -> Path:
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast, SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    torch.manual_seed(seed)
    raw = _bpe_tokenizer(byte_level=False)
    eos = raw.token_to_id("</s>")
    raw.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", eos)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                        model_max_length=16, model_input_names=["input_ids"])
    cfg = SiglipConfig(
        text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                         max_position_embeddings=16, vocab_size=raw.get_vocab_size(), pad_token_id=0),
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                           image_size=image_size, patch_size=8))
    SiglipModel(cfg).save_pretrained(out)
    image_processor = SiglipImageProcessor(size={"height": image_size, "width": image_size})
    SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)
    return out


def tiny_hf_clap(out: Path, seed: int = 0) -> Path:
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizerFast

    torch.manual_seed(seed)
    raw = _bpe_tokenizer(byte_level=True)
    tmp = out / "_bpe"
    tmp.mkdir(parents=True, exist_ok=True)
    raw.model.save(str(tmp))
    # transformers 5 takes vocab=/merges= (vocab_file=/merges_file= are ignored and leave a 5-token tokenizer)
    tokenizer = RobertaTokenizerFast(vocab=str(tmp / "vocab.json"), merges=str(tmp / "merges.txt"),
                                     model_max_length=64)
    cfg = ClapConfig(
        text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                         max_position_embeddings=66, vocab_size=raw.get_vocab_size()),
        audio_config=dict(spec_size=256, num_mel_bins=64, depths=[1, 1], num_attention_heads=[2, 2],
                          patch_embeds_hidden_size=32, hidden_size=64, window_size=8, enable_fusion=False),
        projection_dim=32)
    ClapModel(cfg).save_pretrained(out)
    fe = ClapFeatureExtractor(feature_size=64, sampling_rate=48000, max_length_s=10, truncation="rand_trunc")
    ClapProcessor(feature_extractor=fe, tokenizer=tokenizer).save_pretrained(out)
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    return out


def tiny_open_clip(out: Path, image_size: int = 32, seed: int = 0) -> Path:
    """open_clip's hub layout: open_clip_config.json (model_cfg + preprocess_cfg) and open_clip_model.safetensors."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model_cfg = dict(embed_dim=32,
                     vision_cfg=dict(image_size=image_size, patch_size=8, width=64, layers=2, head_width=32),
                     text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=2, layers=2))
    model = open_clip.CLIP(**model_cfg)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "open_clip_model.safetensors"))
    preprocess = dict(mean=list(open_clip.OPENAI_DATASET_MEAN), std=list(open_clip.OPENAI_DATASET_STD),
                      interpolation="bicubic", resize_mode="shortest")
    (out / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess}))
    return out
