package nn

import (
	"strings"
	"testing"
)

// m parses an expected matrix written as rows of 0/1.
func m(rows ...string) string { return strings.Join(rows, "\n") + "\n" }

func TestMasks(t *testing.T) {
	tests := []struct {
		call string
		got  Mask
		want string
	}{
		{"Causal(4)", Causal(4), m(
			"1 0 0 0",
			"1 1 0 0",
			"1 1 1 0",
			"1 1 1 1")},
		{"Full(2,3)", Full(2, 3), m(
			"1 1 1",
			"1 1 1")},
		{"Prefix(5,2)", Prefix(5, 2), m(
			"1 1 0 0 0",
			"1 1 0 0 0",
			"1 1 1 0 0",
			"1 1 1 1 0",
			"1 1 1 1 1")},
		// BLIP-2 ITG: 2 queries, 3 text tokens. Queries see queries only;
		// text sees all queries and earlier text.
		{"UniLM(2,3)", UniLM(2, 3), m(
			"1 1 0 0 0",
			"1 1 0 0 0",
			"1 1 1 0 0",
			"1 1 1 1 0",
			"1 1 1 1 1")},
		// BLIP-2 ITC: queries and text do not see each other.
		{"Unimodal(2,3)", Unimodal(2, 3), m(
			"1 1 0 0 0",
			"1 1 0 0 0",
			"0 0 1 1 1",
			"0 0 1 1 1",
			"0 0 1 1 1")},
		// Packed sequences [a a b b b c]: causal within each segment.
		{"Segment(0 0 1 1 1 2)", Segment([]int{0, 0, 1, 1, 1, 2}), m(
			"1 0 0 0 0 0",
			"1 1 0 0 0 0",
			"0 0 1 0 0 0",
			"0 0 1 1 0 0",
			"0 0 1 1 1 0",
			"0 0 0 0 0 1")},
		{"Padding(3, T T F)", Padding(3, []bool{true, true, false}), m(
			"1 1 0",
			"1 1 0",
			"1 1 0")},
		{"And(Causal(3), Padding(3, T F T))", And(Causal(3), Padding(3, []bool{true, false, true})), m(
			"1 0 0",
			"1 0 0",
			"1 0 1")},
		// InstructBLIP: [2 queries; 2 instruction tokens; 1 pad], bidirectional with padding.
		{"And(Full(5,5), Padding(5, T T T T F))", And(Full(5, 5), Padding(5, []bool{true, true, true, true, false})), m(
			"1 1 1 1 0",
			"1 1 1 1 0",
			"1 1 1 1 0",
			"1 1 1 1 0",
			"1 1 1 1 0")},
	}
	for _, tc := range tests {
		if got := tc.got.String(); got != tc.want {
			t.Errorf("%s =\n%swant\n%s", tc.call, got, tc.want)
		}
	}
}

func TestBias(t *testing.T) {
	b := Bias(Causal(2), Full(2, 2))
	want := []float32{0, MaskedBias, 0, 0, 0, 0, 0, 0}
	if len(b.Shape) != 4 || b.Shape[0] != 2 || b.Shape[1] != 1 {
		t.Fatalf("Bias shape %v, want [2 1 2 2]", b.Shape)
	}
	for i, v := range want {
		if b.Data[i] != v {
			t.Fatalf("Bias(Causal(2), Full(2,2)).Data = %v, want %v", b.Data, want)
		}
	}
}
