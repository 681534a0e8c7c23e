package trainer

import (
	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/models"
	"github.com/loomtrain/loom/shard"
)

// A VQGAN image tokenizer trained on its own: what LWM's vision stages
// tokenise images with. LWM itself starts from a pretrained VQGAN
// (lwm/vqgan.py, loaded with --vqgan_checkpoint; manifests name it with
// init: vqgan). This recipe trains Loom's VQGAN, the same architecture,
// with reconstruction + codebook + β·commitment (van den Oord et al. 2017
// §3.2; taming-transformers' VQModel without its perceptual and
// adversarial terms, which Loom does not build), so that a job can start
// LWM from a VQGAN it trained (init: vqgan: {job: ...}).
func init() {
	register(&Recipe{
		Name: "vqgan", Family: models.VQGAN,
		Source: "VQ-VAE arXiv 1711.00937 §3.2 (loss) [P]; LargeWorldModel/LWM@f45d2b7 lwm/vqgan.py (architecture) [C]",
		Stages: []StageSpec{{
			Name:       "vqgan",
			Source:     "reconstruction (MSE in [-1,1]) + codebook + 0.25·commitment [P]; no perceptual or GAN loss (a departure from taming-transformers)",
			Kinds:      []shard.Kind{shard.KindImageText},
			Format:     FormatImage,
			Losses:     map[string]float64{"recon": 1, "vq": 1},
			Normaliser: PerSample,
			Hyper:      api.Hyperparameters{LR: f64(1e-4), MinLR: f64(1e-5), Schedule: str("cosine"), WeightDecay: f64(0)},
		}},
	})
}
