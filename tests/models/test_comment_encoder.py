import numpy as np
import pytest
import torch

from models.comment_encoder import CommentEncoder, EmbeddingCache, mean_pool

TEXTS = ["great, buying another", "broke after two days, returning it", "warm tone, stays in tune", ""]


@pytest.fixture(scope="module")
def encoder() -> CommentEncoder:
    return CommentEncoder.from_pretrained(max_length=32)


def test_mean_pool_ignores_padding() -> None:
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.allclose(mean_pool(hidden, mask), torch.tensor([[1.0, 0.0]]))


def test_encode_matches_sentence_transformers(encoder: CommentEncoder) -> None:
    from sentence_transformers import SentenceTransformer

    ours = encoder.encode(TEXTS, batch_size=2)
    reference = SentenceTransformer(encoder.path, device="cpu")
    reference.max_seq_length = 32
    theirs = reference.encode(TEXTS, batch_size=4)
    assert ours.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_each_distinct_text_is_encoded_once(encoder: CommentEncoder, monkeypatch) -> None:
    alone = encoder.encode(TEXTS[:2])
    seen: list[str] = []
    tokenize = encoder.tokenize
    monkeypatch.setattr(encoder, "tokenize", lambda texts: (seen.extend(texts), tokenize(texts))[1])
    repeated = [TEXTS[i % 2] for i in range(6)]
    np.testing.assert_allclose(encoder.encode(repeated, batch_size=3), alone[np.arange(6) % 2], atol=1e-5)
    assert sorted(seen) == sorted(TEXTS[:2])


def test_forward_is_the_onnx_signature(encoder: CommentEncoder) -> None:
    batch = encoder.tokenize(TEXTS[:2])
    emb = encoder(batch["input_ids"], batch["attention_mask"])
    assert emb.shape == (2, encoder.dim)
    np.testing.assert_allclose(emb.detach().numpy(), encoder.encode(TEXTS[:2]), atol=1e-5)


def test_cache_reuses_and_keys_on_content(encoder: CommentEncoder, tmp_path) -> None:
    cache = EmbeddingCache(tmp_path)
    first = cache.encode(encoder, TEXTS)
    assert len(list(tmp_path.glob("*.npy"))) == 1
    np.testing.assert_array_equal(cache.encode(encoder, TEXTS), first)
    assert len(list(tmp_path.glob("*.npy"))) == 1
    cache.encode(encoder, [*TEXTS[:-1], "different"])
    assert len(list(tmp_path.glob("*.npy"))) == 2
    shorter = CommentEncoder(encoder.backbone, encoder.tokenizer, encoder.path, max_length=8)
    assert cache.key(shorter, TEXTS) != cache.key(encoder, TEXTS)


def test_missing_directory_says_what_to_do(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="local Hugging Face model directory"):
        CommentEncoder.from_pretrained(tmp_path / "nope")
