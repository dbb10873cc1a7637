"""The ImageNet-100 Seq-bl / Seq-im presets: the authors' settings (method-spec §6) and a clear
one-line refusal while dataset.path is still the placeholder."""

import pytest

from streamssl import resolve
from streamssl.errors import ConfigError
from streamssl.validation import check_before_work


@pytest.mark.parametrize("kind", ["seq-bl", "seq-im"])
def test_imagenet100_presets_carry_the_authors_settings_and_name_the_missing_path(kind):
    c = resolve.load(f"pipelines/imagenet100-{kind}.yaml")
    assert c.stream.kind == kind and c.stream.classes_per_segment == 10
    assert (c.model.backbone, c.model.image_size, c.learner.stream_batch, c.learner.k, c.buffer.size,
            c.learner.lr) == ("resnet18", 224, 100, 3, 1024, 0.01)
    assert (c.method["crops"], c.method["lambda_mcc"], c.method["lambda_tcr"]) == (10, 200.0, 0.1)
    assert c.scaling.use_gpu and c.dataset.source == "imagefolder"
    if kind == "seq-im":
        counts = c.stream.samples_per_class
        assert len(counts) == 100 and sum(counts) == 84_000 and set(counts) == {600, 1200}
    with pytest.raises(ConfigError, match=r"^dataset\.path: data/raw/imagenet100/train does not exist$"):
        check_before_work(c)
