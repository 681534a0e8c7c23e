package hf

import (
	"encoding/json"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
)

type miscRef struct {
	Arrays map[string]struct {
		DType string    `json:"dtype"`
		Shape []int     `json:"shape"`
		Data  []float64 `json:"data"`
	} `json:"arrays"`
}

func readMisc(t *testing.T) miscRef {
	t.Helper()
	b, err := os.ReadFile("testdata/vqgan_misc.json")
	if err != nil {
		t.Fatal(err)
	}
	var r miscRef
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func checkArray(t *testing.T, what string, a *NDArray, dtype string, shape []int, want []float64) {
	t.Helper()
	if a.DType != dtype || !slices.Equal(a.Shape, shape) {
		t.Errorf("%s: %s %v, want %s %v", what, a.DType, a.Shape, dtype, shape)
		return
	}
	got, err := a.Float32()
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if len(got) != len(want) {
		t.Errorf("%s: %d values, want %d", what, len(got), len(want))
		return
	}
	for i := range got {
		if float64(got[i]) != float64(float32(want[i])) {
			t.Errorf("%s[%d] = %v, want %v", what, i, got[i], float32(want[i]))
			return
		}
	}
}

// TestUnpickleMisc reads the same tree pickled with protocols 2 (GLOBAL,
// _codecs.encode bytes) and 5 (numpy _frombuffer, BYTEARRAY8).
func TestUnpickleMisc(t *testing.T) {
	ref := readMisc(t)
	for _, f := range []string{"testdata/vqgan_misc_p2.pkl", "testdata/vqgan_misc_p5.pkl"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		v, err := Unpickle(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		arrs, err := FlaxParams(map[string]any{"params": v.(map[string]any)["params"]})
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(arrs) != len(ref.Arrays) {
			t.Errorf("%s: %d arrays, want %d", f, len(arrs), len(ref.Arrays))
		}
		for name, w := range ref.Arrays {
			a := arrs["arrays/"+name]
			if a == nil {
				t.Errorf("%s: no arrays/%s", f, name)
				continue
			}
			checkArray(t, f+" "+name, a, w.DType, w.Shape, w.Data)
		}
		meta := v.(map[string]any)["meta"].(map[string]any)
		want := map[string]any{"name": "vqgan", "step": int64(12345), "big": int64(-1 << 40), "lr": 0.125, "flag": true, "none": nil}
		for k, w := range want {
			if meta[k] != w {
				t.Errorf("%s: meta[%s] = %#v, want %#v", f, k, meta[k], w)
			}
		}
		if l, ok := meta["list"].([]any); !ok || len(l) != 3 || l[0] != int64(1) || l[2].([]any)[0] != int64(3) {
			t.Errorf("%s: meta[list] = %#v", f, meta["list"])
		}
		if tu, ok := meta["tuple"].([]any); !ok || len(tu) != 2 || tu[1] != "a" {
			t.Errorf("%s: meta[tuple] = %#v", f, meta["tuple"])
		}
		if raw, ok := meta["raw"].([]byte); !ok || !slices.Equal(raw, []byte{0, 0xff}) {
			t.Errorf("%s: meta[raw] = %#v", f, meta["raw"])
		}
	}
}

// TestUnpickleShims reads FrozenDict, jax.Array and numpy ≥ 2's
// numpy._core spelling, as gen_vqgan.py's stand-ins pickle them.
func TestUnpickleShims(t *testing.T) {
	ref := readMisc(t)
	b, err := os.ReadFile("testdata/vqgan_misc_shim.pkl")
	if err != nil {
		t.Fatal(err)
	}
	v, err := Unpickle(b)
	if err != nil {
		t.Fatal(err)
	}
	arrs, err := FlaxParams(v)
	if err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]string{"jax": "f4", "np2": "fortran", "nested/f8": "f8"} {
		w := ref.Arrays[src]
		if a := arrs[name]; a == nil {
			t.Errorf("no %s", name)
		} else {
			checkArray(t, name, a, w.DType, w.Shape, w.Data)
		}
	}
}

func TestUnpickleRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, data, want string
	}{
		{"os.system", "\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.", "offset 2: opcode GLOBAL (0x63): global os.system is refused"},
		{"builtins.eval via STACK_GLOBAL", "\x80\x04\x8c\x08builtins\x8c\x04eval\x93.", "offset 18: opcode STACK_GLOBAL (0x93): global builtins.eval is refused"},
		{"torch tensor", "\x80\x02ctorch._utils\n_rebuild_tensor_v2\n.", "global torch._utils._rebuild_tensor_v2 is refused"},
		{"protocol 1", "\x80\x01N.", "protocol 1: only 2 to 5 are read"},
		{"truncated", "\x80\x04\x8c\x10abc", "offset 2: opcode SHORT_BINUNICODE (0x8c): needs 16 bytes, 3 are left"},
		{"no STOP", "\x80\x04N", "offset 3: the data ends before STOP"},
		{"persistent id", "\x80\x02X\x01\x00\x00\x00aQ.", "opcode BINPERSID (0x51): not supported"},
		{"NEWOBJ", "\x80\x02cnumpy\nndarray\n)\x81.", "opcode NEWOBJ (0x81): not supported"},
		{"out-of-band buffer", "\x80\x05\x97.", "out-of-band buffers are not read"},
		{"int key", "\x80\x02}K\x01K\x02s.", "dict key of type int"},
		{"self-holding dict", "\x80\x02}q\x00X\x01\x00\x00\x00ah\x00s.", "nested more than 64 deep"},
		{"memo miss", "\x80\x02h\x05.", "memo index 5 was never stored"},
		{"reconstruct without BUILD", "\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R.", "ndarray without its state"},
		{"dtype not read", "\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R.", `numpy dtype "O8" is not read`},
	} {
		_, err := Unpickle([]byte(tc.data))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}

// TestUnpicklePrefixes: every truncation of a real pickle is an error, not
// a panic, and names an offset.
func TestUnpicklePrefixes(t *testing.T) {
	for _, f := range []string{"testdata/vqgan_misc_p2.pkl", "testdata/vqgan_misc_p5.pkl", "testdata/vqgan_misc_shim.pkl"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; n < len(b)-1; n++ {
			if _, err := Unpickle(b[:n]); err == nil || !strings.HasPrefix(err.Error(), "pickle: offset ") {
				t.Fatalf("%s[:%d]: %v", f, n, err)
			}
		}
	}
}

func TestNDArrayFloat32(t *testing.T) {
	f16 := &NDArray{DType: "<f2", Shape: []int{4}, Data: []byte{0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00, 0x00, 0x7c}}
	got, err := f16.Float32()
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != 1 || got[1] != -2 || got[2] != float32(math.Ldexp(1, -24)) || !math.IsInf(float64(got[3]), 1) {
		t.Errorf("f16 = %v", got)
	}
	i2 := &NDArray{DType: ">i2", Shape: []int{2}, Data: []byte{0xff, 0xfe, 0x01, 0x00}}
	if got, _ := i2.Float32(); got[0] != -2 || got[1] != 256 {
		t.Errorf("big-endian i2 = %v", got)
	}
	if _, err := (&NDArray{DType: "<f4", Shape: []int{2}, Data: []byte{1, 2, 3}}).Float32(); err == nil {
		t.Error("short data accepted")
	}
}

func FuzzUnpickle(f *testing.F) {
	for _, p := range []string{"testdata/vqgan_misc_p2.pkl", "testdata/vqgan_misc_p5.pkl", "testdata/vqgan_misc_shim.pkl"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("\x80\x02}q\x00X\x01\x00\x00\x00ah\x00s."))
	f.Add([]byte("\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00(]\x8a\x02\xff\x7fe."))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Unpickle(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "pickle: ") {
				t.Fatalf("error %q does not start with \"pickle: \"", err)
			}
			return
		}
		if arrs, err := FlaxParams(v); err == nil {
			for name, a := range arrs {
				if _, err := a.Float32(); err != nil && !strings.Contains(err.Error(), "dtype") {
					t.Fatalf("%s: %v", name, err)
				}
			}
		}
	})
}
