import pytest

import hawk_kernels as hk


@pytest.fixture(scope="module")
def pipe():
    return hk.load_demo_pipeline(device="cpu")


def test_demo_pipeline_generates_with_fewer_passes(pipe):
    out = pipe.generate(["a handwritten digit seven", "the number 3"], mode="hawk", seed=0, num_nodes=16)
    assert len(out.images) == 2 and out.images[0].size == (28, 28)
    assert out.num_tokens == [14 * 15 + 1] * 2  # rows of 14 codes + row end, then image end
    assert all(0 < p < 14 * 15 - 1 for p in out.num_forward_passes)
    assert out.output.mean_accepted_length > 1.5
    again = pipe.generate(["a handwritten digit seven", "the number 3"], mode="hawk", seed=0, num_nodes=16)
    assert (again.codes == out.codes).all()


def test_demo_pipeline_rejects_unknown_words(pipe):
    with pytest.raises(ValueError, match="unknown prompt word"):
        pipe.generate(["a handwritten giraffe"])
