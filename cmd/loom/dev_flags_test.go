package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/trainer"
)

// TestResolveDevFlags: every recipe gets its own size and steps when the
// flags are not given, and flags given on the command line win, even when
// they equal the zero value (--first-steps 0).
func TestResolveDevFlags(t *testing.T) {
	for _, tc := range []struct {
		recipe string
		set    map[string]any // flag name → value given on the command line
		size   string
		first  int64
		steps  int64
	}{
		{recipe: "blip2", size: "small", first: 450, steps: 150},
		{recipe: "qwen-vl", size: "tiny", first: 0, steps: 150},
		{recipe: "vila", size: "tiny", first: 0, steps: 150},
		{recipe: "lwm", size: "tiny", first: 0, steps: 80},
		{recipe: "instructblip", size: "tiny", first: 0, steps: 150},
		{recipe: "llava", size: "tiny", first: 0, steps: 150},
		{recipe: "blip2", set: map[string]any{"size": "tiny"}, size: "tiny", first: 450, steps: 150},
		{recipe: "blip2", set: map[string]any{"first-steps": int64(0)}, size: "small", first: 0, steps: 150},
		{recipe: "blip2", set: map[string]any{"size": "tiny", "first-steps": int64(30), "steps": int64(4)}, size: "tiny", first: 30, steps: 4},
		{recipe: "vila", set: map[string]any{"size": "small"}, size: "small", first: 0, steps: 150},
		{recipe: "vila", set: map[string]any{"steps": int64(20)}, size: "tiny", first: 0, steps: 20},
		{recipe: "qwen-vl", set: map[string]any{"first-steps": int64(300)}, size: "tiny", first: 300, steps: 150},
		{recipe: "lwm", set: map[string]any{"size": "small", "steps": int64(10)}, size: "small", first: 0, steps: 10},
	} {
		f := devFlags{recipe: tc.recipe}
		for name, v := range tc.set {
			switch name {
			case "size":
				f.size = v.(string)
			case "first-steps":
				f.firstSteps = v.(int64)
			case "steps":
				f.steps = v.(int64)
			}
		}
		got, err := resolveDevFlags(f, func(name string) bool { _, ok := tc.set[name]; return ok })
		call := fmt.Sprintf("resolveDevFlags(--recipe %s, given %v)", tc.recipe, tc.set)
		if err != nil {
			t.Errorf("%s: %v", call, err)
			continue
		}
		if got.size != tc.size || got.firstSteps != tc.first || got.steps != tc.steps {
			t.Errorf("%s = size %s, first-steps %d, steps %d; want %s, %d, %d", call, got.size, got.firstSteps, got.steps, tc.size, tc.first, tc.steps)
		}
	}
}

// TestResolveDevFlagsRefused: an unknown recipe or impossible step counts
// are refused naming the flag; every recipe has defaults that make a valid
// manifest.
func TestResolveDevFlagsRefused(t *testing.T) {
	none := func(string) bool { return false }
	for _, tc := range []struct {
		f    devFlags
		set  func(string) bool
		want string
	}{
		{devFlags{recipe: "flamingo"}, none, `--recipe "flamingo"`},
		{devFlags{recipe: "llava", blip2: 5}, func(n string) bool { return n == "blip2-steps" }, "--blip2-steps: only InstructBLIP"},
		{devFlags{recipe: "instructblip", blip2: -1}, func(n string) bool { return n == "blip2-steps" }, "--blip2-steps -1"},
		{devFlags{recipe: "vila", steps: 0}, func(n string) bool { return n == "steps" }, "--steps 0"},
		{devFlags{recipe: "blip2", firstSteps: -1}, func(n string) bool { return n == "first-steps" }, "--first-steps -1"},
	} {
		if _, err := resolveDevFlags(tc.f, tc.set); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("resolveDevFlags(%+v): %v, want an error containing %q", tc.f, err, tc.want)
		}
	}
	for _, r := range api.Recipes {
		f, err := resolveDevFlags(devFlags{recipe: r, workers: 2, batch: 16, lr: 5e-3}, none)
		if err != nil {
			t.Errorf("recipe %s: %v", r, err)
			continue
		}
		uri := func(k shard.Kind) string { return "s3://loom/datasets/" + string(k) }
		if _, err := devManifest(f, uri); err != nil {
			t.Errorf("recipe %s with its defaults: manifest: %v", r, err)
		}
		if f.blip2 > 0 {
			bm, err := devBLIP2Manifest(f, uri)
			if err != nil {
				t.Errorf("recipe %s: the BLIP-2 job: %v", r, err)
			} else if len(bm.Stages) != 1 || bm.Stages[0].Name != "representation" {
				t.Errorf("recipe %s: the BLIP-2 job runs %v, want only its representation stage (the Q-Former with its text side)", r, bm.Stages)
			}
		}
	}
}

// TestRecipeListsAgree: the recipe names live in three places (api.Recipes,
// which a manifest is validated against; the trainer's registry; loom
// dev's devDefaults): each holds the same names.
func TestRecipeListsAgree(t *testing.T) {
	var reg, dev []string
	for _, r := range trainer.Recipes() {
		reg = append(reg, r.Name)
	}
	for name := range devDefaults {
		dev = append(dev, name)
	}
	manifest := slices.Clone(api.Recipes)
	slices.Sort(manifest)
	slices.Sort(dev)
	if !slices.Equal(manifest, reg) || !slices.Equal(dev, reg) {
		t.Errorf("recipes: api.Recipes %v, trainer registry %v, devDefaults %v: want the same names", manifest, reg, dev)
	}
}
