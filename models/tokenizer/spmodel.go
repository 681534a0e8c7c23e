package tokenizer

import "fmt"

// SentencePiece piece types (sentencepiece_model.proto,
// ModelProto.SentencePiece.Type).
const (
	PieceNormal      = 1
	PieceUnknown     = 2
	PieceControl     = 3
	PieceUserDefined = 4
	PieceUnused      = 5
	PieceByte        = 6
)

// SentencePiece model types (TrainerSpec.ModelType). Loom encodes the
// first two.
const (
	ModelUnigram = 1
	ModelBPE     = 2
	ModelWord    = 3
	ModelChar    = 4
)

// spPiece is one ModelProto.SentencePiece.
type spPiece struct {
	Piece string
	Score float32
	Type  int
}

// spModel is the part of a ModelProto that encoding and decoding use. The
// defaults are proto2's declared defaults.
type spModel struct {
	Pieces []spPiece

	// TrainerSpec
	ModelType           int
	ByteFallback        bool
	TreatWSAsSuffix     bool
	UnkID, BOSID, EOSID int
	PadID               int
	UnkSurface          string

	// NormalizerSpec
	NormName          string
	Charsmap          []byte
	AddDummyPrefix    bool
	RemoveExtraWS     bool
	EscapeWhitespaces bool
}

// parseSPModel decodes a serialized ModelProto. Errors name the field
// ("pieces[3].type: ..."); unknown fields are skipped, as proto2 readers do.
func parseSPModel(b []byte) (*spModel, error) {
	m := &spModel{
		ModelType: ModelUnigram, UnkID: 0, BOSID: 1, EOSID: 2, PadID: -1,
		UnkSurface:     " \u2047 ",
		AddDummyPrefix: true, RemoveExtraWS: true, EscapeWhitespaces: true,
	}
	err := walkProto(b, "ModelProto", func(f protoField) error {
		switch f.num {
		case 1:
			path := fmt.Sprintf("pieces[%d]", len(m.Pieces))
			if err := f.want(path, wireBytes); err != nil {
				return err
			}
			p, err := parseSPPiece(f.bytes, path)
			if err != nil {
				return err
			}
			m.Pieces = append(m.Pieces, p)
		case 2:
			if err := f.want("trainer_spec", wireBytes); err != nil {
				return err
			}
			return m.parseTrainerSpec(f.bytes)
		case 3:
			if err := f.want("normalizer_spec", wireBytes); err != nil {
				return err
			}
			return m.parseNormalizerSpec(f.bytes)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, m.validate()
}

func parseSPPiece(b []byte, path string) (spPiece, error) {
	p := spPiece{Type: PieceNormal}
	err := walkProto(b, path, func(f protoField) error {
		var err error
		switch f.num {
		case 1:
			p.Piece, err = f.string(path + ".piece")
		case 2:
			p.Score, err = f.float32(path + ".score")
		case 3:
			p.Type, err = f.int32(path + ".type")
			if err == nil && (p.Type < PieceNormal || p.Type > PieceByte) {
				err = fmt.Errorf("%s.type: %d is not a piece type (1..6)", path, p.Type)
			}
		}
		return err
	})
	return p, err
}

func (m *spModel) parseTrainerSpec(b []byte) error {
	return walkProto(b, "trainer_spec", func(f protoField) error {
		var err error
		switch f.num {
		case 3:
			m.ModelType, err = f.int32("trainer_spec.model_type")
		case 24:
			m.TreatWSAsSuffix, err = f.bool("trainer_spec.treat_whitespace_as_suffix")
		case 35:
			m.ByteFallback, err = f.bool("trainer_spec.byte_fallback")
		case 40:
			m.UnkID, err = f.int32("trainer_spec.unk_id")
		case 41:
			m.BOSID, err = f.int32("trainer_spec.bos_id")
		case 42:
			m.EOSID, err = f.int32("trainer_spec.eos_id")
		case 43:
			m.PadID, err = f.int32("trainer_spec.pad_id")
		case 44:
			m.UnkSurface, err = f.string("trainer_spec.unk_surface")
		}
		return err
	})
}

func (m *spModel) parseNormalizerSpec(b []byte) error {
	return walkProto(b, "normalizer_spec", func(f protoField) error {
		var err error
		switch f.num {
		case 1:
			m.NormName, err = f.string("normalizer_spec.name")
		case 2:
			err = f.want("normalizer_spec.precompiled_charsmap", wireBytes)
			m.Charsmap = f.bytes
		case 3:
			m.AddDummyPrefix, err = f.bool("normalizer_spec.add_dummy_prefix")
		case 4:
			m.RemoveExtraWS, err = f.bool("normalizer_spec.remove_extra_whitespaces")
		case 5:
			m.EscapeWhitespaces, err = f.bool("normalizer_spec.escape_whitespaces")
		}
		return err
	})
}

// validate checks what the encoder relies on, as sentencepiece's
// ModelInterface::InitializePieces does: no piece twice, one unknown piece,
// byte pieces only with byte_fallback, and a model type Loom can encode.
func (m *spModel) validate() error {
	if len(m.Pieces) == 0 {
		return fmt.Errorf("pieces: the model has no pieces")
	}
	switch m.ModelType {
	case ModelUnigram, ModelBPE:
	case ModelWord, ModelChar:
		return fmt.Errorf("trainer_spec.model_type: %d (WORD or CHAR) is not supported; Loom encodes UNIGRAM (1) and BPE (2)", m.ModelType)
	default:
		return fmt.Errorf("trainer_spec.model_type: %d is not a model type", m.ModelType)
	}
	if m.TreatWSAsSuffix {
		return fmt.Errorf("trainer_spec.treat_whitespace_as_suffix: true is not supported")
	}
	seen := make(map[string]int, len(m.Pieces))
	unk := -1
	for i, p := range m.Pieces {
		if p.Piece == "" {
			return fmt.Errorf("pieces[%d].piece: empty", i)
		}
		if j, dup := seen[p.Piece]; dup {
			return fmt.Errorf("pieces[%d].piece: %q is already pieces[%d]", i, p.Piece, j)
		}
		seen[p.Piece] = i
		switch p.Type {
		case PieceUnknown:
			if unk >= 0 {
				return fmt.Errorf("pieces[%d].type: a second UNKNOWN piece (the first is pieces[%d])", i, unk)
			}
			unk = i
		case PieceByte:
			if !m.ByteFallback {
				return fmt.Errorf("pieces[%d].type: BYTE piece %q but trainer_spec.byte_fallback is false", i, p.Piece)
			}
			if _, ok := pieceByte(p.Piece); !ok {
				return fmt.Errorf("pieces[%d].piece: BYTE piece %q is not of the form <0xNN>", i, p.Piece)
			}
		}
	}
	if unk < 0 {
		return fmt.Errorf("pieces: no piece of type UNKNOWN")
	}
	m.UnkID = unk
	for _, id := range []*int{&m.BOSID, &m.EOSID, &m.PadID} {
		if *id < 0 || *id >= len(m.Pieces) {
			*id = -1
		}
	}
	return nil
}

// pieceByte parses a byte piece "<0xNN>" (upper-case hex, as sentencepiece
// and Hugging Face write them).
func pieceByte(s string) (byte, bool) {
	if len(s) != 6 || s[:3] != "<0x" || s[5] != '>' {
		return 0, false
	}
	var v byte
	for _, c := range []byte(s[3:5]) {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | (c - '0')
		case c >= 'A' && c <= 'F':
			v = v<<4 | (c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return v, true
}

// bytePiece is the inverse of pieceByte.
func bytePiece(b byte) string { return fmt.Sprintf("<0x%02X>", b) }
