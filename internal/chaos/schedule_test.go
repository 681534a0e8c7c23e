package chaos

import (
	"reflect"
	"testing"
	"time"
)

func planOpts() Options {
	return Options{Kinds: Kinds, Faults: 16, FirstStep: 5, LastStep: 200, Coordinators: 3, Workers: 2,
		Hold: map[Kind]time.Duration{HangWorker: 4 * time.Second}}
}

func TestPlanIsAFunctionOfTheSeed(t *testing.T) {
	a, err := Plan(7, planOpts())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Plan(7, planOpts())
	if !reflect.DeepEqual(a, b) {
		t.Errorf("Plan(7) twice:\n%v\n%v", a, b)
	}
	c, _ := Plan(8, planOpts())
	if reflect.DeepEqual(a, c) {
		t.Errorf("Plan(7) and Plan(8) are the same schedule: %v", a)
	}
}

func TestPlanShape(t *testing.T) {
	o := planOpts()
	for seed := uint64(1); seed <= 50; seed++ {
		fs, err := Plan(seed, o)
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) != o.Faults {
			t.Fatalf("Plan(%d): %d faults, want %d", seed, len(fs), o.Faults)
		}
		count := map[Kind]int{}
		for i, f := range fs {
			count[f.Kind]++
			if f.Step < o.FirstStep || f.Step > o.LastStep {
				t.Errorf("Plan(%d)[%d] = %v: step outside [%d, %d]", seed, i, f, o.FirstStep, o.LastStep)
			}
			if i > 0 && f.Step <= fs[i-1].Step {
				t.Errorf("Plan(%d)[%d] = %v: not after %v", seed, i, f, fs[i-1])
			}
			n := o.Workers
			if f.Kind.OnCoordinator() {
				n = o.Coordinators
			}
			if f.Target < 0 || f.Target >= n {
				t.Errorf("Plan(%d)[%d] = %v: target outside [0, %d)", seed, i, f, n)
			}
			base := DefaultHold
			if b, ok := o.Hold[f.Kind]; ok {
				base = b
			}
			switch {
			case f.Kind == KillCoordinator || f.Kind == KillWorker:
				if f.Hold != 0 {
					t.Errorf("Plan(%d)[%d] = %v: a kill with a hold", seed, i, f)
				}
			case f.Hold < base || f.Hold > base*3/2+100*time.Millisecond:
				t.Errorf("Plan(%d)[%d] = %v: hold outside [%s, 1.5×]", seed, i, f, base)
			}
		}
		// 16 faults over 8 kinds: each kind exactly twice.
		for _, k := range Kinds {
			if count[k] != 2 {
				t.Errorf("Plan(%d): %d faults of kind %s, want 2 (%v)", seed, count[k], k, fs)
			}
		}
	}
}

func TestPlanFewerFaultsThanKinds(t *testing.T) {
	o := planOpts()
	o.Faults = 3
	fs, err := Plan(1, o)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[Kind]bool{}
	for _, f := range fs {
		if seen[f.Kind] {
			t.Errorf("Plan(1) with 3 faults repeats %s before using every kind: %v", f.Kind, fs)
		}
		seen[f.Kind] = true
	}
}

func TestPlanRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Options)
	}{
		{"too many faults", func(o *Options) { o.Faults, o.FirstStep, o.LastStep = 5, 1, 4 }},
		{"step 0", func(o *Options) { o.FirstStep = 0 }},
		{"no workers", func(o *Options) { o.Workers = 0 }},
		{"unknown kind", func(o *Options) { o.Kinds = []Kind{"meteor"} }},
	} {
		o := planOpts()
		tc.edit(&o)
		if fs, err := Plan(1, o); err == nil {
			t.Errorf("Plan with %s = %v, want an error", tc.name, fs)
		}
	}
}

func TestParseKinds(t *testing.T) {
	ks, err := ParseKinds("worker-sigkill, s3-faults")
	if err != nil || !reflect.DeepEqual(ks, []Kind{KillWorker, S3Errors}) {
		t.Errorf("ParseKinds = %v, %v", ks, err)
	}
	if ks, _ := ParseKinds("all"); len(ks) != len(Kinds) {
		t.Errorf("ParseKinds(all) = %v", ks)
	}
	if _, err := ParseKinds("worker-sigkill,nope"); err == nil {
		t.Error("ParseKinds(nope): no error")
	}
}
