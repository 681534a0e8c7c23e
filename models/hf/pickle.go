package hf

import (
	"encoding/binary"
	"fmt"
	"math"
	"unicode/utf8"
)

// This file is a minimal Python unpickler for parameter trees: nested
// dicts, lists and tuples of strings, numbers and numpy arrays, written with
// pickle protocols 2 to 5 (Python's Lib/pickle.py and pickletools.py
// document the opcodes). It never runs code: a GLOBAL is accepted only when
// it names one of the few constructors below, each interpreted here as
// data, and any other GLOBAL is an error naming it.
//
// Accepted globals:
//   - numpy.core.multiarray._reconstruct (numpy ≥ 2 spells it
//     numpy._core.multiarray) with numpy.ndarray, followed by BUILD with
//     the array state (version, shape, dtype, is_fortran, raw bytes): how
//     ndarray pickles under protocols 2–4;
//   - numpy.core.numeric._frombuffer (numpy._core.numeric): protocol 5's
//     in-band ndarray (buffer, dtype, shape, order);
//   - numpy.dtype with its BUILD state (the byte order);
//   - _codecs.encode(str, "latin1") and bytes(): how protocol 2 writes
//     bytes (empty ones with the latter);
//   - flax.core.frozen_dict.FrozenDict(dict) and collections.OrderedDict:
//     read as plain dicts;
//   - jax._src.array._reconstruct_array(fun, args, arr_state, aval_state):
//     a pickled jax.Array, read as the numpy array it wraps.

// NDArray is a numpy array read from a pickle.
type NDArray struct {
	// DType is the numpy type string with its byte order: "<f4", ">f8",
	// "|u1".
	DType string
	Shape []int
	// Fortran is set when Data is in column-major order.
	Fortran bool
	// Data is the raw element bytes; it may alias the pickle's bytes.
	Data []byte
}

// Numel is the number of elements.
func (a *NDArray) Numel() int {
	n := 1
	for _, d := range a.Shape {
		n *= d
	}
	return n
}

// Float32 returns the elements as float32 in C (row-major) order.
// Floating types (f2, f4, f8) and integer types are converted.
func (a *NDArray) Float32() ([]float32, error) {
	kind, size, order, err := parseDType(a.DType)
	if err != nil {
		return nil, err
	}
	n := a.Numel()
	if len(a.Data) != n*size {
		return nil, fmt.Errorf("array %s %v: %d data bytes, want %d", a.DType, a.Shape, len(a.Data), n*size)
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if order == '>' {
		bo = binary.BigEndian
	}
	out := make([]float32, n)
	for i := range out {
		b := a.Data[i*size : (i+1)*size]
		switch {
		case kind == 'f' && size == 2:
			out[i] = f16ToF32(bo.Uint16(b))
		case kind == 'f' && size == 4:
			out[i] = math.Float32frombits(bo.Uint32(b))
		case kind == 'f' && size == 8:
			out[i] = float32(math.Float64frombits(bo.Uint64(b)))
		case kind == 'i' || kind == 'u':
			var u uint64
			switch size {
			case 1:
				u = uint64(b[0])
			case 2:
				u = uint64(bo.Uint16(b))
			case 4:
				u = uint64(bo.Uint32(b))
			default:
				u = bo.Uint64(b)
			}
			if kind == 'i' {
				sh := uint(64 - 8*size)
				out[i] = float32(int64(u<<sh) >> sh)
			} else {
				out[i] = float32(u)
			}
		case kind == 'b':
			if b[0] != 0 {
				out[i] = 1
			}
		}
	}
	if a.Fortran && len(a.Shape) > 1 {
		out = fortranToC(out, a.Shape)
	}
	return out, nil
}

// parseDType reads "<f4" into kind 'f', size 4 and order '<' ('=' and '|'
// read as little-endian, which every platform Loom runs on is).
func parseDType(s string) (kind byte, size int, order byte, err error) {
	order = '<'
	if len(s) > 0 && (s[0] == '<' || s[0] == '>' || s[0] == '=' || s[0] == '|') {
		if s[0] == '>' {
			order = '>'
		}
		s = s[1:]
	}
	switch s {
	case "f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1":
		return s[0], int(s[1] - '0'), order, nil
	}
	return 0, 0, 0, fmt.Errorf("numpy dtype %q is not read (float, integer and bool only)", s)
}

func f16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp == 0:
		if man == 0 {
			return math.Float32frombits(sign)
		}
		f := float32(man) / 1024 / 16384 // man · 2^-24
		if sign != 0 {
			f = -f
		}
		return f
	}
	return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
}

// fortranToC reorders column-major values of the given shape to row-major.
func fortranToC(v []float32, shape []int) []float32 {
	out := make([]float32, len(v))
	idx := make([]int, len(shape))
	for c := range out { // c walks row-major order
		f, stride := 0, 1
		for d := 0; d < len(shape); d++ {
			f += idx[d] * stride
			stride *= shape[d]
		}
		out[c] = v[f]
		for d := len(shape) - 1; d >= 0; d-- {
			if idx[d]++; idx[d] < shape[d] {
				break
			}
			idx[d] = 0
		}
	}
	return out
}

// Unpickle decodes a pickle written with protocol 2, 3, 4 or 5 whose
// objects are dicts with string keys (map[string]any), lists and tuples
// ([]any), str (string), bytes ([]byte), int (int64), float (float64),
// bool, None (nil) and numpy arrays (*NDArray). Anything else, including
// every GLOBAL not listed at the top of this file, is an error that names
// the byte offset and the opcode. Arrays' Data alias b.
func Unpickle(b []byte) (any, error) {
	u := &unpickler{in: b, memo: map[int]any{}}
	v, err := u.run()
	if err != nil {
		return nil, err
	}
	budget := maxPickleNodes
	return pickleExport(v, 0, &budget, "")
}

const (
	maxPickleDepth = 64
	maxPickleNodes = 1 << 22
)

// VM values.
type (
	pkGlobal struct{ module, name string }
	pkList   struct{ items []any }
	pkTuple  []any
	pkDict   struct {
		keys []string
		vals map[string]any
	}
	pkDType struct {
		str   string // "f4", as numpy.dtype's first argument
		order byte   // from BUILD; 0 until then
	}
	pkStr8 string // a protocol-0/1 (Python 2) str: raw bytes
)

func newPkDict() *pkDict { return &pkDict{vals: map[string]any{}} }

func (d *pkDict) set(k string, v any) {
	if _, ok := d.vals[k]; !ok {
		d.keys = append(d.keys, k)
	}
	d.vals[k] = v
}

type unpickler struct {
	in    []byte
	pos   int
	op    byte // current opcode
	opAt  int  // its offset
	stack []any
	marks []int
	memo  map[int]any
}

var pickleOpNames = map[byte]string{
	'(': "MARK", '.': "STOP", '0': "POP", '1': "POP_MARK", '2': "DUP", 'F': "FLOAT", 'I': "INT",
	'J': "BININT", 'K': "BININT1", 'L': "LONG", 'M': "BININT2", 'N': "NONE", 'P': "PERSID",
	'Q': "BINPERSID", 'R': "REDUCE", 'S': "STRING", 'T': "BINSTRING", 'U': "SHORT_BINSTRING",
	'V': "UNICODE", 'X': "BINUNICODE", 'a': "APPEND", 'b': "BUILD", 'c': "GLOBAL", 'd': "DICT",
	'}': "EMPTY_DICT", 'e': "APPENDS", 'g': "GET", 'h': "BINGET", 'i': "INST", 'j': "LONG_BINGET",
	'l': "LIST", ']': "EMPTY_LIST", 'o': "OBJ", 'p': "PUT", 'q': "BINPUT", 'r': "LONG_BINPUT",
	's': "SETITEM", 't': "TUPLE", ')': "EMPTY_TUPLE", 'u': "SETITEMS", 'G': "BINFLOAT",
	0x80: "PROTO", 0x81: "NEWOBJ", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x85: "TUPLE1",
	0x86: "TUPLE2", 0x87: "TUPLE3", 0x88: "NEWTRUE", 0x89: "NEWFALSE", 0x8a: "LONG1", 0x8b: "LONG4",
	'B': "BINBYTES", 'C': "SHORT_BINBYTES", 0x8c: "SHORT_BINUNICODE", 0x8d: "BINUNICODE8",
	0x8e: "BINBYTES8", 0x8f: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET", 0x92: "NEWOBJ_EX",
	0x93: "STACK_GLOBAL", 0x94: "MEMOIZE", 0x95: "FRAME", 0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER",
	0x98: "READONLY_BUFFER",
}

func pickleOpName(op byte) string {
	if n, ok := pickleOpNames[op]; ok {
		return n
	}
	return "unknown"
}

func (u *unpickler) errf(format string, args ...any) error {
	return fmt.Errorf("pickle: offset %d: opcode %s (0x%02x): %s", u.opAt, pickleOpName(u.op), u.op, fmt.Sprintf(format, args...))
}

func (u *unpickler) take(n uint64) ([]byte, error) {
	if n > uint64(len(u.in)-u.pos) {
		return nil, u.errf("needs %d bytes, %d are left", n, len(u.in)-u.pos)
	}
	b := u.in[u.pos : u.pos+int(n)]
	u.pos += int(n)
	return b, nil
}

func (u *unpickler) uint(n int) (uint64, error) {
	b, err := u.take(uint64(n))
	if err != nil {
		return 0, err
	}
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v, nil
}

func (u *unpickler) line() (string, error) {
	for i := u.pos; i < len(u.in); i++ {
		if u.in[i] == '\n' {
			s := string(u.in[u.pos:i])
			u.pos = i + 1
			return s, nil
		}
	}
	return "", u.errf("no newline before the end")
}

func (u *unpickler) push(v any) { u.stack = append(u.stack, v) }

func (u *unpickler) pop() (any, error) {
	if len(u.stack) == 0 || (len(u.marks) > 0 && len(u.stack) == u.marks[len(u.marks)-1]) {
		return nil, u.errf("stack underflow")
	}
	v := u.stack[len(u.stack)-1]
	u.stack = u.stack[:len(u.stack)-1]
	return v, nil
}

func (u *unpickler) top() (any, error) {
	if len(u.stack) == 0 || (len(u.marks) > 0 && len(u.stack) == u.marks[len(u.marks)-1]) {
		return nil, u.errf("stack underflow")
	}
	return u.stack[len(u.stack)-1], nil
}

// popMark returns the items pushed since the last MARK.
func (u *unpickler) popMark() ([]any, error) {
	if len(u.marks) == 0 {
		return nil, u.errf("no MARK on the stack")
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := append([]any(nil), u.stack[m:]...)
	u.stack = u.stack[:m]
	return items, nil
}

func (u *unpickler) memoPut(i uint64) error {
	v, err := u.top()
	if err != nil {
		return err
	}
	if i > math.MaxInt32 {
		return u.errf("memo index %d is out of range", i)
	}
	u.memo[int(i)] = v
	return nil
}

func (u *unpickler) memoGet(i uint64) error {
	v, ok := u.memo[int(min(i, math.MaxInt32+1))]
	if !ok {
		return u.errf("memo index %d was never stored", i)
	}
	u.push(v)
	return nil
}

func (u *unpickler) run() (any, error) {
	for u.pos < len(u.in) {
		u.opAt, u.op = u.pos, u.in[u.pos]
		u.pos++
		if err := u.step(); err != nil {
			if err == errPickleStop {
				if len(u.stack) != 1 || len(u.marks) != 0 {
					return nil, u.errf("STOP with %d values and %d marks on the stack, want 1 and 0", len(u.stack), len(u.marks))
				}
				return u.stack[0], nil
			}
			return nil, err
		}
	}
	return nil, fmt.Errorf("pickle: offset %d: the data ends before STOP", len(u.in))
}

var errPickleStop = fmt.Errorf("stop")

func (u *unpickler) step() error {
	switch u.op {
	case 0x80: // PROTO
		v, err := u.uint(1)
		if err != nil {
			return err
		}
		if v < 2 || v > 5 {
			return u.errf("protocol %d: only 2 to 5 are read", v)
		}
	case 0x95: // FRAME: a length hint; the opcodes inside are read as usual
		n, err := u.uint(8)
		if err != nil {
			return err
		}
		if n > uint64(len(u.in)-u.pos) {
			return u.errf("frame of %d bytes, %d are left", n, len(u.in)-u.pos)
		}
	case '.':
		return errPickleStop
	case '(':
		u.marks = append(u.marks, len(u.stack))
	case '0':
		if len(u.marks) > 0 && len(u.stack) == u.marks[len(u.marks)-1] {
			u.marks = u.marks[:len(u.marks)-1]
			return nil
		}
		_, err := u.pop()
		return err
	case '1':
		_, err := u.popMark()
		return err
	case '2':
		v, err := u.top()
		if err != nil {
			return err
		}
		u.push(v)
	case 'N':
		u.push(nil)
	case 0x88:
		u.push(true)
	case 0x89:
		u.push(false)
	case 'J':
		v, err := u.uint(4)
		if err != nil {
			return err
		}
		u.push(int64(int32(uint32(v))))
	case 'K':
		v, err := u.uint(1)
		if err != nil {
			return err
		}
		u.push(int64(v))
	case 'M':
		v, err := u.uint(2)
		if err != nil {
			return err
		}
		u.push(int64(v))
	case 0x8a, 0x8b: // LONG1, LONG4: little-endian two's complement
		var n uint64
		var err error
		if u.op == 0x8a {
			n, err = u.uint(1)
		} else {
			n, err = u.uint(4)
			if err == nil && int32(uint32(n)) < 0 {
				return u.errf("negative length")
			}
		}
		if err != nil {
			return err
		}
		if n > 8 {
			return u.errf("a %d-byte integer does not fit in int64", n)
		}
		b, err := u.take(n)
		if err != nil {
			return err
		}
		var v uint64
		for i := len(b) - 1; i >= 0; i-- {
			v = v<<8 | uint64(b[i])
		}
		if n > 0 && n < 8 && b[n-1]&0x80 != 0 {
			v |= ^uint64(0) << (8 * n)
		}
		u.push(int64(v))
	case 'G':
		b, err := u.take(8)
		if err != nil {
			return err
		}
		u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
	case 'X', 0x8c, 0x8d: // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
		b, err := u.lenPrefixed(map[byte]int{'X': 4, 0x8c: 1, 0x8d: 8}[u.op])
		if err != nil {
			return err
		}
		if !utf8.Valid(b) {
			return u.errf("string is not valid UTF-8")
		}
		u.push(string(b))
	case 'B', 'C', 0x8e, 0x96: // BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8
		b, err := u.lenPrefixed(map[byte]int{'B': 4, 'C': 1, 0x8e: 8, 0x96: 8}[u.op])
		if err != nil {
			return err
		}
		u.push(b)
	case 'T', 'U': // BINSTRING (signed 4-byte length), SHORT_BINSTRING
		w := 1
		if u.op == 'T' {
			w = 4
		}
		n, err := u.uint(w)
		if err != nil {
			return err
		}
		if w == 4 && int32(uint32(n)) < 0 {
			return u.errf("negative length")
		}
		b, err := u.take(n)
		if err != nil {
			return err
		}
		u.push(pkStr8(b))
	case ')':
		u.push(pkTuple{})
	case 't':
		items, err := u.popMark()
		if err != nil {
			return err
		}
		u.push(pkTuple(items))
	case 0x85, 0x86, 0x87:
		n := int(u.op-0x85) + 1
		items := make(pkTuple, n)
		for i := n - 1; i >= 0; i-- {
			v, err := u.pop()
			if err != nil {
				return err
			}
			items[i] = v
		}
		u.push(items)
	case ']':
		u.push(&pkList{})
	case 'l':
		items, err := u.popMark()
		if err != nil {
			return err
		}
		u.push(&pkList{items: items})
	case 'a', 'e':
		var items []any
		if u.op == 'a' {
			v, err := u.pop()
			if err != nil {
				return err
			}
			items = []any{v}
		} else {
			var err error
			if items, err = u.popMark(); err != nil {
				return err
			}
		}
		t, err := u.top()
		if err != nil {
			return err
		}
		l, ok := t.(*pkList)
		if !ok {
			return u.errf("appends to a %s, not a list", pickleTypeName(t))
		}
		l.items = append(l.items, items...)
	case '}':
		u.push(newPkDict())
	case 'd', 's', 'u':
		var items []any
		var err error
		if u.op == 's' {
			v, err1 := u.pop()
			k, err2 := u.pop()
			if err1 != nil || err2 != nil {
				return u.errf("stack underflow")
			}
			items = []any{k, v}
		} else if items, err = u.popMark(); err != nil {
			return err
		}
		if len(items)%2 != 0 {
			return u.errf("%d items do not pair into keys and values", len(items))
		}
		var d *pkDict
		if u.op == 'd' {
			d = newPkDict()
		} else {
			t, err := u.top()
			if err != nil {
				return err
			}
			var ok bool
			if d, ok = t.(*pkDict); !ok {
				return u.errf("sets items on a %s, not a dict", pickleTypeName(t))
			}
		}
		for i := 0; i < len(items); i += 2 {
			k, ok := pickleKey(items[i])
			if !ok {
				return u.errf("dict key of type %s: only string keys are read", pickleTypeName(items[i]))
			}
			d.set(k, items[i+1])
		}
		if u.op == 'd' {
			u.push(d)
		}
	case 'q', 'r':
		i, err := u.uint(map[byte]int{'q': 1, 'r': 4}[u.op])
		if err != nil {
			return err
		}
		return u.memoPut(i)
	case 0x94:
		return u.memoPut(uint64(len(u.memo)))
	case 'h', 'j':
		i, err := u.uint(map[byte]int{'h': 1, 'j': 4}[u.op])
		if err != nil {
			return err
		}
		return u.memoGet(i)
	case 'c':
		mod, err := u.line()
		if err != nil {
			return err
		}
		name, err := u.line()
		if err != nil {
			return err
		}
		return u.global(mod, name)
	case 0x93:
		nv, err1 := u.pop()
		mv, err2 := u.pop()
		if err1 != nil || err2 != nil {
			return u.errf("stack underflow")
		}
		mod, ok1 := mv.(string)
		name, ok2 := nv.(string)
		if !ok1 || !ok2 {
			return u.errf("module and name must be strings, not %s and %s", pickleTypeName(mv), pickleTypeName(nv))
		}
		return u.global(mod, name)
	case 'R':
		args, err1 := u.pop()
		fn, err2 := u.pop()
		if err1 != nil || err2 != nil {
			return u.errf("stack underflow")
		}
		v, err := u.reduce(fn, args)
		if err != nil {
			return err
		}
		u.push(v)
	case 'b':
		state, err := u.pop()
		if err != nil {
			return err
		}
		obj, err := u.top()
		if err != nil {
			return err
		}
		return u.build(obj, state)
	case 0x98: // READONLY_BUFFER: marks the buffer on top read-only
		_, err := u.top()
		return err
	case 0x97:
		return u.errf("out-of-band buffers are not read (pickle in-band)")
	default:
		return u.errf("not supported (the reader takes dicts, lists, tuples, strings, numbers and numpy arrays)")
	}
	return nil
}

func (u *unpickler) lenPrefixed(w int) ([]byte, error) {
	n, err := u.uint(w)
	if err != nil {
		return nil, err
	}
	return u.take(n)
}

func pickleKey(v any) (string, bool) {
	switch k := v.(type) {
	case string:
		return k, true
	case pkStr8:
		return string(k), true
	}
	return "", false
}

// pickleGlobals are the only names a GLOBAL may load.
var pickleGlobals = map[string]bool{
	"numpy ndarray":                       true,
	"numpy dtype":                         true,
	"numpy.core.multiarray _reconstruct":  true,
	"numpy._core.multiarray _reconstruct": true,
	"numpy.core.numeric _frombuffer":      true,
	"numpy._core.numeric _frombuffer":     true,
	"_codecs encode":                      true,
	"__builtin__ bytes":                   true,
	"builtins bytes":                      true,
	"flax.core.frozen_dict FrozenDict":    true,
	"collections OrderedDict":             true,
	"jax._src.array _reconstruct_array":   true,
}

func (u *unpickler) global(mod, name string) error {
	if !pickleGlobals[mod+" "+name] {
		return u.errf("global %s.%s is refused: only numpy arrays and dtypes, bytes (_codecs.encode), FrozenDict, OrderedDict and jax arrays are read, and no other code is run", mod, name)
	}
	u.push(pkGlobal{mod, name})
	return nil
}

func pickleTypeName(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int64:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case pkStr8:
		return "str (protocol 0/1)"
	case []byte:
		return "bytes"
	case pkTuple:
		return "tuple"
	case *pkList:
		return "list"
	case *pkDict:
		return "dict"
	case *NDArray:
		return "ndarray"
	case *pkDType:
		return "dtype"
	case pkGlobal:
		return v.module + "." + v.name
	}
	return fmt.Sprintf("%T", v)
}

// reduce applies an accepted callable to its argument tuple.
func (u *unpickler) reduce(fn, argv any) (any, error) {
	g, ok := fn.(pkGlobal)
	if !ok {
		return nil, u.errf("calls a %s, not an accepted global", pickleTypeName(fn))
	}
	args, ok := argv.(pkTuple)
	if !ok {
		return nil, u.errf("%s.%s: arguments are a %s, not a tuple", g.module, g.name, pickleTypeName(argv))
	}
	bad := func(want string) error {
		return u.errf("%s.%s: %d arguments (%s), want %s", g.module, g.name, len(args), pickleArgTypes(args), want)
	}
	switch g.name {
	case "_reconstruct": // (numpy.ndarray, shape, dtype code)
		if len(args) != 3 {
			return nil, bad("(ndarray, shape, typecode)")
		}
		if c, ok := args[0].(pkGlobal); !ok || c.module != "numpy" || c.name != "ndarray" {
			return nil, u.errf("%s.%s: builds a %s; only numpy.ndarray is read", g.module, g.name, pickleTypeName(args[0]))
		}
		return &NDArray{}, nil
	case "dtype": // (str, align, copy)
		if len(args) < 1 {
			return nil, bad("(str, align, copy)")
		}
		s, ok := args[0].(string)
		if !ok {
			return nil, u.errf("numpy.dtype of a %s; only type strings are read", pickleTypeName(args[0]))
		}
		if _, _, _, err := parseDType(s); err != nil {
			return nil, u.errf("%v", err)
		}
		return &pkDType{str: s}, nil
	case "_frombuffer": // (buffer, dtype, shape, order)
		if len(args) != 4 {
			return nil, bad("(buffer, dtype, shape, order)")
		}
		buf, ok := pickleBytes(args[0])
		dt, ok2 := args[1].(*pkDType)
		order, ok3 := args[3].(string)
		if !ok || !ok2 || !ok3 || (order != "C" && order != "F") {
			return nil, bad("(bytes, dtype, shape, 'C' or 'F')")
		}
		a := &NDArray{Fortran: order == "F"}
		if err := u.fillArray(a, args[2], dt, buf); err != nil {
			return nil, err
		}
		return a, nil
	case "encode": // _codecs.encode(str, "latin1")
		if len(args) != 2 {
			return nil, bad("(str, 'latin1')")
		}
		s, ok := args[0].(string)
		enc, ok2 := args[1].(string)
		if !ok || !ok2 || (enc != "latin1" && enc != "latin-1") {
			return nil, bad("(str, 'latin1')")
		}
		b := make([]byte, 0, len(s))
		for _, r := range s {
			if r > 0xff {
				return nil, u.errf("_codecs.encode: rune U+%04X is not latin-1", r)
			}
			b = append(b, byte(r))
		}
		return b, nil
	case "bytes": // protocol 2's empty bytes: bytes()
		if len(args) != 0 {
			return nil, bad("()")
		}
		return []byte{}, nil
	case "FrozenDict":
		if len(args) != 1 {
			return nil, bad("(dict)")
		}
		d, ok := args[0].(*pkDict)
		if !ok {
			return nil, bad("(dict)")
		}
		return d, nil
	case "OrderedDict":
		if len(args) != 0 {
			return nil, bad("() followed by SETITEMS")
		}
		return newPkDict(), nil
	case "_reconstruct_array": // jax: (fun, args, arr_state, aval_state)
		if len(args) != 4 {
			return nil, bad("(fun, args, arr_state, aval_state)")
		}
		v, err := u.reduce(args[0], args[1])
		if err != nil {
			return nil, err
		}
		a, ok := v.(*NDArray)
		if !ok {
			return nil, u.errf("jax _reconstruct_array: fun gives a %s, not an ndarray", pickleTypeName(v))
		}
		if err := u.build(a, args[2]); err != nil {
			return nil, err
		}
		return a, nil
	}
	return nil, u.errf("%s.%s cannot be called", g.module, g.name)
}

func pickleArgTypes(args []any) string {
	s := ""
	for i, a := range args {
		if i > 0 {
			s += ", "
		}
		s += pickleTypeName(a)
	}
	return s
}

func pickleBytes(v any) ([]byte, bool) {
	switch b := v.(type) {
	case []byte:
		return b, true
	case pkStr8:
		return []byte(b), true
	}
	return nil, false
}

// build applies a BUILD state: an ndarray's __setstate__ or a dtype's.
func (u *unpickler) build(obj, state any) error {
	switch o := obj.(type) {
	case *NDArray:
		st, ok := state.(pkTuple)
		if ok && len(st) == 5 {
			st = st[1:] // drop the version
		}
		if !ok || len(st) != 4 {
			return u.errf("ndarray state is a %s, want (version, shape, dtype, is_fortran, data)", pickleTypeName(state))
		}
		dt, ok1 := st[1].(*pkDType)
		fortran, ok2 := st[2].(bool)
		data, ok3 := pickleBytes(st[3])
		if !ok1 || !ok2 || !ok3 {
			return u.errf("ndarray state (%s), want (shape, dtype, bool, bytes): object arrays are not read", pickleArgTypes(st))
		}
		if o.DType != "" {
			return u.errf("ndarray state set twice")
		}
		o.Fortran = fortran
		return u.fillArray(o, st[0], dt, data)
	case *pkDType:
		st, ok := state.(pkTuple)
		if !ok || len(st) < 3 {
			return u.errf("dtype state is a %s, want (version, byteorder, subarray, ...)", pickleTypeName(state))
		}
		bo, ok := st[1].(string)
		if !ok || len(bo) != 1 || (bo != "<" && bo != ">" && bo != "=" && bo != "|") {
			return u.errf("dtype byte order %v", st[1])
		}
		if st[2] != nil || (len(st) > 3 && st[3] != nil) {
			return u.errf("sub-array and structured dtypes are not read")
		}
		o.order = bo[0]
		return nil
	}
	return u.errf("BUILD on a %s: only ndarray and dtype states are read", pickleTypeName(obj))
}

func (u *unpickler) fillArray(a *NDArray, shapev any, dt *pkDType, data []byte) error {
	shp, ok := shapev.(pkTuple)
	if !ok {
		return u.errf("array shape is a %s, not a tuple", pickleTypeName(shapev))
	}
	_, size, _, err := parseDType(dt.str)
	if err != nil {
		return u.errf("%v", err)
	}
	n := 1
	a.Shape = make([]int, len(shp))
	for i, d := range shp {
		v, ok := d.(int64)
		if !ok || v < 0 || v > 1<<40 || (v != 0 && n > (1<<50)/int(v)) {
			return u.errf("array dimension %v (of %d) is not a size", d, i)
		}
		a.Shape[i] = int(v)
		n *= int(v)
	}
	if n*size != len(data) {
		return u.errf("array %s %v needs %d bytes, the data has %d", dt.str, a.Shape, n*size, len(data))
	}
	order := dt.order
	if order == 0 || order == '=' {
		order = '<'
	}
	if size == 1 {
		order = '|'
	}
	a.DType = string(order) + dt.str
	a.Data = data
	return nil
}

// pickleExport turns VM values into the public ones, bounding depth and
// size (a pickle can make a dict hold itself).
func pickleExport(v any, depth int, budget *int, path string) (any, error) {
	if *budget--; *budget < 0 {
		return nil, fmt.Errorf("pickle: more than %d objects", maxPickleNodes)
	}
	if depth > maxPickleDepth {
		return nil, fmt.Errorf("pickle: %s: nested more than %d deep (or it holds itself)", pickleAt(path), maxPickleDepth)
	}
	switch x := v.(type) {
	case nil, bool, int64, float64, string, []byte:
		return x, nil
	case pkStr8:
		return string(x), nil
	case *NDArray:
		if x.DType == "" {
			return nil, fmt.Errorf("pickle: %s: ndarray without its state (no BUILD)", pickleAt(path))
		}
		return x, nil
	case pkTuple:
		return pickleExportList(x, depth, budget, path)
	case *pkList:
		return pickleExportList(x.items, depth, budget, path)
	case *pkDict:
		out := make(map[string]any, len(x.keys))
		for _, k := range x.keys {
			e, err := pickleExport(x.vals[k], depth+1, budget, path+"/"+k)
			if err != nil {
				return nil, err
			}
			out[k] = e
		}
		return out, nil
	}
	return nil, fmt.Errorf("pickle: %s: a %s is not a value the reader returns", pickleAt(path), pickleTypeName(v))
}

func pickleExportList(items []any, depth int, budget *int, path string) ([]any, error) {
	out := make([]any, len(items))
	for i, it := range items {
		e, err := pickleExport(it, depth+1, budget, fmt.Sprintf("%s[%d]", path, i))
		if err != nil {
			return nil, err
		}
		out[i] = e
	}
	return out, nil
}

func pickleAt(path string) string {
	if path == "" {
		return "the top object"
	}
	return path
}
