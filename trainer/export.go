package trainer

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/models"
	"github.com/loomtrain/loom/models/hf"
	"github.com/loomtrain/loom/models/nn"
	"github.com/loomtrain/loom/models/tokenizer"
	"github.com/loomtrain/loom/shard"
)

// OpenCheckpoint rebuilds the model of a committed checkpoint with its
// weights: the shape from the config the checkpoint records, or, for
// checkpoints written before configs were recorded, from the job's
// manifest (the stage's preset with the byte-level tokenizer, as the
// worker trains it). Objects are checked against their sha256; the load is
// an exact match, naming any missing, extra or wrongly shaped tensor.
func OpenCheckpoint(ctx context.Context, store shard.ObjectStore, ref CheckpointRef, m *api.Manifest) (models.Model, *CheckpointManifest, error) {
	man, err := ReadCheckpoint(ctx, store, ref)
	if err != nil {
		return nil, nil, err
	}
	var cfg models.Config
	if len(man.Model) > 0 {
		if err := json.Unmarshal(man.Model, &cfg); err != nil {
			return nil, nil, fmt.Errorf("trainer: checkpoint step %d: model config: %w", man.Step, err)
		}
	} else {
		if m == nil {
			return nil, nil, fmt.Errorf("trainer: checkpoint step %d records no model config; the job's manifest is needed", man.Step)
		}
		st, err := Resolve(m, man.Stage)
		if err != nil {
			return nil, nil, err
		}
		tok, err := tokenizer.NewBPE(nil, tokenizer.DefaultSpecial)
		if err != nil {
			return nil, nil, err
		}
		if cfg, err = stageConfig(m, st, tok, nil); err != nil {
			return nil, nil, err
		}
	}
	model, err := models.New(cfg, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("trainer: checkpoint step %d: %w", man.Step, err)
	}
	mf, err := readFiles(ctx, store, man, "model")
	if err != nil {
		return nil, nil, err
	}
	if _, err := model.Params().Load(mf, nn.LoadOptions{}); err != nil {
		return nil, nil, fmt.Errorf("trainer: checkpoint step %d (job %s, stage %s): %w", man.Step, man.Job, man.StageName, err)
	}
	return model, man, nil
}

// PlanInit reports what the manifest's init block would load into its
// first stage's model, reading headers and checkpoint manifests but no
// weights (`loom submit --dry-run`). Sources naming other jobs must carry
// their resolved checkpoints (the coordinator's, see api.InitSource).
func PlanInit(ctx context.Context, j Job) (*InitReport, error) {
	st, err := Resolve(j.Manifest, 0)
	if err != nil {
		return nil, err
	}
	srcs, err := openInit(ctx, j, st.Recipe.Family)
	if err != nil {
		return nil, err
	}
	tok, uri := j.Tokenizer, ""
	if tok == nil {
		if tok, uri, err = initTokenizer(ctx, j, srcs); err != nil {
			return nil, err
		}
	}
	if tok == nil {
		if tok, err = tokenizer.NewBPE(nil, tokenizer.DefaultSpecial); err != nil {
			return nil, err
		}
	}
	cfg, err := stageConfig(j.Manifest, st, tok, srcs)
	if err != nil {
		return nil, fmt.Errorf("trainer: stage %q: %w", st.Name, err)
	}
	model, err := models.New(cfg, seed(j.Manifest))
	if err != nil {
		return nil, err
	}
	rep, err := loadInit(ctx, j, srcs, model, false, nil)
	if err != nil {
		return nil, err
	}
	rep.Tokenizer, rep.VocabSize = uri, tok.VocabSize()
	return rep, nil
}

// ExportHF writes a part of a model ("model", "llm", "vision") as a
// Hugging Face directory in the layout that fits it (hf.ExportLayout):
// safetensors shards with an index when there are several, then the
// files (tokenizer files, for instance), then config.json last. It returns
// the layout's name.
func ExportHF(ctx context.Context, m models.Model, part string, sink hf.Sink, opt hf.ExportOptions) (*hf.ExportResult, string, error) {
	cfg := m.Config()
	l, err := hf.ExportLayout(part, cfg)
	if err != nil {
		return nil, "", err
	}
	mp, err := l.Mapping(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("export %s as %s: %w", part, l.Name, err)
	}
	cj, err := l.ConfigJSON(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("export %s as %s: config.json: %w", part, l.Name, err)
	}
	files := map[string][]byte{}
	for k, v := range opt.Files {
		files[k] = v
	}
	files[hf.ConfigFile] = cj
	opt.Files = files
	res, err := hf.Export(ctx, sink, mp, m.Params(), opt)
	if err != nil {
		return nil, "", err
	}
	return res, l.Name, nil
}
