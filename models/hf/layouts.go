package hf

import (
	"fmt"

	"github.com/loomtrain/loom/models"
	"github.com/loomtrain/loom/models/llm"
	"github.com/loomtrain/loom/models/vit"
)

// The registered layouts: which config.json model_type initialises which
// part of which family. One list, read by FindLayout (import) and
// ExportLayout (export).
func init() {
	llmFamilies := []models.Family{models.BLIP2, models.InstructBLIP, models.QwenVL, models.LLaVA, models.VILA, models.LWM}
	register(Layout{
		Name: "LlamaForCausalLM", Part: "llm", ModelTypes: []string{"llama", "qwen2", "mistral"}, Families: llmFamilies,
		Configure: func(b []byte, cfg *models.Config) error {
			c, err := LlamaConfig(b)
			if err != nil {
				return err
			}
			cfg.LLM = c
			return nil
		},
		Mapping: func(cfg models.Config) (Mapping, error) {
			if cfg.LLM.Kind == llm.KindOPT {
				return Mapping{}, fmt.Errorf("the model's LLM is OPT, not LLaMA-style")
			}
			return LlamaMapping(cfg.LLM, "", "llm."), nil
		},
		ConfigJSON: func(cfg models.Config) ([]byte, error) { return LlamaConfigJSON(cfg.LLM) },
		Exports:    func(cfg models.Config) bool { return cfg.LLM.Hidden > 0 && cfg.LLM.Kind != llm.KindOPT },
	})
	register(Layout{
		Name: "OPTForCausalLM", Part: "llm", ModelTypes: []string{"opt"}, Families: llmFamilies,
		Configure: func(b []byte, cfg *models.Config) error {
			c, err := OPTConfig(b)
			if err != nil {
				return err
			}
			cfg.LLM = c
			return nil
		},
		Mapping: func(cfg models.Config) (Mapping, error) {
			if cfg.LLM.Kind != llm.KindOPT {
				return Mapping{}, fmt.Errorf("the model's LLM is LLaMA-style, not OPT")
			}
			return OPTMapping(cfg.LLM, "", "llm."), nil
		},
		ConfigJSON: func(cfg models.Config) ([]byte, error) { return OPTConfigJSON(cfg.LLM) },
		Exports:    func(cfg models.Config) bool { return cfg.LLM.Kind == llm.KindOPT },
	})
	vision := func(name string, types []string, conf func([]byte) (vit.Config, error), mapping func(vit.Config, string, string) Mapping,
		js func(vit.Config) ([]byte, error), exports func(vit.Config) bool) Layout {
		return Layout{
			Name: name, Part: "vision", ModelTypes: types,
			Families: []models.Family{models.BLIP2, models.InstructBLIP, models.QwenVL, models.LLaVA, models.VILA},
			Configure: func(b []byte, cfg *models.Config) error {
				c, err := conf(b)
				if err != nil {
					return err
				}
				// The families read the ViT's tokens themselves (LLaVA the
				// penultimate layer, BLIP-2 through its own ln_vision), so
				// the tower's final LayerNorm is not built.
				c.PostNorm = vit.PostNormNone
				c.Head = false
				cfg.ViT = c
				cfg.ImageSize = c.ImageSize
				cfg.ViT.PosGrid = 0
				if cfg.QFormer.VisionWidth != 0 {
					cfg.QFormer.VisionWidth = c.Width
				}
				return nil
			},
			Mapping: func(cfg models.Config) (Mapping, error) {
				return mapping(cfg.ViT, "vision_model.", VisionPrefix(cfg.Family)+"."), nil
			},
			ConfigJSON: func(cfg models.Config) ([]byte, error) { return js(cfg.ViT) },
			Exports:    func(cfg models.Config) bool { return cfg.ViT.Width > 0 && exports(cfg.ViT) },
		}
	}
	register(vision("CLIPVisionModel", []string{"clip_vision_model", "clip"}, CLIPVisionConfig, CLIPVisionMapping, CLIPVisionConfigJSON,
		func(c vit.Config) bool { return c.ClassToken && !c.PatchBias }))
	register(vision("SiglipVisionModel", []string{"siglip_vision_model", "siglip"}, SiglipVisionConfig, SiglipVisionMapping, SiglipVisionConfigJSON,
		func(c vit.Config) bool { return !c.ClassToken }))
	register(vision("Blip2VisionModel", []string{"blip_2_vision_model"}, EVAVisionConfig, EVAVisionMapping, EVAVisionConfigJSON,
		func(c vit.Config) bool { return c.ClassToken && c.PatchBias }))
	register(Layout{
		Name: "Blip2ForConditionalGeneration (vision_model)", Part: "vision", ModelTypes: []string{"blip-2"},
		Families: []models.Family{models.BLIP2, models.InstructBLIP},
		Configure: func(b []byte, cfg *models.Config) error {
			c, err := Blip2Config(b)
			if err != nil {
				return err
			}
			cfg.ViT, cfg.ImageSize = c.ViT, c.ImageSize
			cfg.ViT.PostNorm, cfg.ViT.PosGrid = vit.PostNormNone, 0
			cfg.QFormer.VisionWidth = c.ViT.Width
			return nil
		},
		// post_layernorm is Loom's ln_vision; the Q-Former and the LLM
		// are ignored.
		Mapping: func(cfg models.Config) (Mapping, error) { return Blip2VisionMapping(cfg.ViT, "vit.") },
	})
	register(Layout{
		Name: "Blip2ForConditionalGeneration (qformer)", Part: "qformer", ModelTypes: []string{"blip-2"},
		Families: []models.Family{models.BLIP2, models.InstructBLIP},
		Configure: func(b []byte, cfg *models.Config) error {
			q, err := Blip2QFormerConfig(b, cfg.QFormer)
			if err != nil {
				return err
			}
			cfg.QFormer = q
			return nil
		},
		Mapping: func(cfg models.Config) (Mapping, error) {
			m := Blip2QFormerMapping(cfg.QFormerConfig(), "", "qformer.")
			m.Ignore = append(m.Ignore, "vision_model", "language_projection", "language_model")
			return m, nil
		},
	})
	register(Layout{
		Name: "Blip2ForConditionalGeneration", Part: "model", ModelTypes: []string{"blip-2"},
		Families: []models.Family{models.BLIP2},
		Configure: func(b []byte, cfg *models.Config) error {
			c, err := Blip2Config(b)
			if err != nil {
				return err
			}
			cfg.ViT, cfg.LLM, cfg.QFormer, cfg.ImageSize = c.ViT, c.LLM, c.QFormer, c.ImageSize
			return nil
		},
		Mapping:    func(cfg models.Config) (Mapping, error) { return Blip2Mapping(cfg, "") },
		ConfigJSON: Blip2ConfigJSON,
		Exports:    func(cfg models.Config) bool { return cfg.Stage == 2 },
	})
	register(Layout{
		Name: "LlavaForConditionalGeneration", Part: "model", ModelTypes: []string{"llava"},
		Families: []models.Family{models.LLaVA, models.VILA},
		Configure: func(b []byte, cfg *models.Config) error {
			c, err := LlavaConfig(b)
			if err != nil {
				return err
			}
			cfg.ViT, cfg.LLM, cfg.Projector, cfg.ImageSize = c.ViT, c.LLM, c.Projector, c.ImageSize
			return nil
		},
		Mapping:    LlavaMapping,
		ConfigJSON: LlavaConfigJSON,
		Exports:    func(cfg models.Config) bool { return cfg.Projector == models.ProjMLP2xGELU },
	})
	register(Layout{
		Name: "BertModel→Q-Former", Part: "qformer", ModelTypes: []string{"bert"},
		Families: []models.Family{models.BLIP2, models.InstructBLIP},
		Configure: func(b []byte, cfg *models.Config) error {
			c, err := BertConfig(b, cfg.QFormer)
			if err != nil {
				return err
			}
			cfg.QFormer = c
			return nil
		},
		Mapping: func(cfg models.Config) (Mapping, error) {
			return BertQFormerMapping(cfg.QFormerConfig(), "", "qformer."), nil
		},
	})
}
