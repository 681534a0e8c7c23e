package tokenizer

// trie is a byte trie over a set of strings with an int value each. It finds
// the keys that are prefixes of a string, which is what added-token
// splitting, user-defined symbols and the Unigram lattice need.
type trie struct {
	edges map[uint64]int32 // node<<8 | byte -> child node
	val   []int32          // node -> value, -1 if no key ends there
	n     int              // number of keys
}

func newTrie() *trie { return &trie{edges: map[uint64]int32{}, val: []int32{-1}} }

// add inserts s with value v (a later add of the same key replaces v).
// The empty string is not a key.
func (t *trie) add(s string, v int) {
	if s == "" {
		return
	}
	node := int32(0)
	for i := 0; i < len(s); i++ {
		k := uint64(node)<<8 | uint64(s[i])
		next, ok := t.edges[k]
		if !ok {
			next = int32(len(t.val))
			t.val = append(t.val, -1)
			t.edges[k] = next
		}
		node = next
	}
	if t.val[node] < 0 {
		t.n++
	}
	t.val[node] = int32(v)
}

// walk calls fn(length, value) for every key that is a prefix of s, shortest
// first.
func (t *trie) walk(s string, fn func(l, v int)) {
	if t == nil {
		return
	}
	node := int32(0)
	for i := 0; i < len(s); i++ {
		next, ok := t.edges[uint64(node)<<8|uint64(s[i])]
		if !ok {
			return
		}
		node = next
		if v := t.val[node]; v >= 0 {
			fn(i+1, int(v))
		}
	}
}

// longest returns the length of the longest key that is a prefix of s, or 0.
func (t *trie) longest(s string) int {
	l, _ := t.longestValue(s)
	return l
}

// longestValue returns the length and value of the longest key that is a
// prefix of s, or (0, -1).
func (t *trie) longestValue(s string) (int, int) {
	best, bv := 0, -1
	t.walk(s, func(l, v int) { best, bv = l, v })
	return best, bv
}
