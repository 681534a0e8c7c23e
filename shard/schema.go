package shard

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// Kind names what a dataset's rows are. It is recorded in the index and in
// the Arrow schema metadata ("loom.kind").
type Kind string

// The sample kinds. docs/data-format.md gives each one's Arrow schema.
const (
	KindImageText    Kind = "image-text"   // one image and its caption
	KindInterleaved  Kind = "interleaved"  // an ordered list of text and image items (MMC4/VILA)
	KindVideoText    Kind = "video-text"   // frames (+ timestamps) and a caption
	KindText         Kind = "text"         // a text document
	KindConversation Kind = "conversation" // multi-turn chat with images and per-turn loss flags
	KindTokens       Kind = "tokens"       // a pre-tokenized sequence (e.g. VQ codes)
)

// Kinds lists every kind, in documentation order.
var Kinds = []Kind{KindImageText, KindInterleaved, KindVideoText, KindText, KindConversation, KindTokens}

// SchemaVersion is the version of the Arrow schemas written by this code.
// Readers accept versions up to it.
const SchemaVersion = 1

// ParseKind checks a kind name.
func ParseKind(s string) (Kind, error) {
	for _, k := range Kinds {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("unknown sample kind %q (want one of %v)", s, Kinds)
}

// Image is an encoded image (JPEG or PNG bytes) with its size in pixels.
type Image struct {
	Format string // "jpeg" or "png"
	Width  int
	Height int
	Data   []byte
}

// Item is one element of an interleaved document: exactly one of Text and
// Image is set.
type Item struct {
	Text  string
	Image *Image
}

// Turn is one message of a conversation. Loss says whether the trainer
// computes loss on this turn's tokens (typically the assistant's turns).
// Images are referenced from Text by "<image>" placeholders, in order.
type Turn struct {
	Role string // "user", "assistant" or "system"
	Text string
	Loss bool
}

// Sample is one row of any kind; the fields that a kind does not use stay
// zero. ValidateSample says which fields each kind needs.
type Sample struct {
	ID   string
	Meta string // optional JSON metadata, passed through

	Caption string // image-text, video-text
	Text    string // text

	Image *Image // image-text

	Items []Item // interleaved

	Frames     []Image   // video-text
	Timestamps []float64 // video-text: seconds, one per frame (may be empty)

	Images []Image // conversation
	Turns  []Turn  // conversation

	Tokens []int32 // tokens
}

// ValidateSample checks that s has what kind needs.
func ValidateSample(kind Kind, s *Sample) error {
	if s.ID == "" {
		return errors.New("empty id")
	}
	checkImg := func(what string, im *Image) error {
		if im == nil || len(im.Data) == 0 {
			return fmt.Errorf("%s: no image data", what)
		}
		if im.Width <= 0 || im.Height <= 0 {
			return fmt.Errorf("%s: size %dx%d", what, im.Width, im.Height)
		}
		return nil
	}
	switch kind {
	case KindImageText:
		return checkImg("image", s.Image)
	case KindInterleaved:
		if len(s.Items) == 0 {
			return errors.New("no items")
		}
		for i := range s.Items {
			it := &s.Items[i]
			if (it.Image != nil) == (it.Text != "") {
				return fmt.Errorf("item %d: want exactly one of text and image", i)
			}
			if it.Image != nil {
				if err := checkImg(fmt.Sprintf("item %d", i), it.Image); err != nil {
					return err
				}
			}
		}
	case KindVideoText:
		if len(s.Frames) == 0 {
			return errors.New("no frames")
		}
		for i := range s.Frames {
			if err := checkImg(fmt.Sprintf("frame %d", i), &s.Frames[i]); err != nil {
				return err
			}
		}
		if len(s.Timestamps) != 0 && len(s.Timestamps) != len(s.Frames) {
			return fmt.Errorf("%d timestamps for %d frames", len(s.Timestamps), len(s.Frames))
		}
	case KindText:
		if s.Text == "" {
			return errors.New("empty text")
		}
	case KindConversation:
		if len(s.Turns) == 0 {
			return errors.New("no turns")
		}
		for i := range s.Images {
			if err := checkImg(fmt.Sprintf("image %d", i), &s.Images[i]); err != nil {
				return err
			}
		}
	case KindTokens:
		if len(s.Tokens) == 0 {
			return errors.New("no tokens")
		}
	default:
		return fmt.Errorf("unknown kind %q", kind)
	}
	return nil
}

// sampleBytes estimates the bytes a sample adds to a record batch.
func sampleBytes(s *Sample) int64 {
	n := int64(len(s.ID) + len(s.Meta) + len(s.Caption) + len(s.Text) + 16)
	img := func(im *Image) int64 { return int64(len(im.Data) + len(im.Format) + 16) }
	if s.Image != nil {
		n += img(s.Image)
	}
	for i := range s.Items {
		n += int64(len(s.Items[i].Text)) + 8
		if s.Items[i].Image != nil {
			n += img(s.Items[i].Image)
		}
	}
	for i := range s.Frames {
		n += img(&s.Frames[i])
	}
	for i := range s.Images {
		n += img(&s.Images[i])
	}
	for i := range s.Turns {
		n += int64(len(s.Turns[i].Role)+len(s.Turns[i].Text)) + 9
	}
	n += int64(8*len(s.Timestamps) + 4*len(s.Tokens))
	return n
}

// imageType is the Arrow struct every image is stored as.
var imageType = arrow.StructOf(
	arrow.Field{Name: "format", Type: arrow.BinaryTypes.String},
	arrow.Field{Name: "width", Type: arrow.PrimitiveTypes.Int32},
	arrow.Field{Name: "height", Type: arrow.PrimitiveTypes.Int32},
	arrow.Field{Name: "data", Type: arrow.BinaryTypes.Binary},
)

// Schema returns the Arrow schema of kind, with the metadata keys
// "loom.kind" and "loom.schema_version".
func Schema(kind Kind) (*arrow.Schema, error) {
	id := arrow.Field{Name: "id", Type: arrow.BinaryTypes.String}
	meta := arrow.Field{Name: "meta", Type: arrow.BinaryTypes.String, Nullable: true}
	str := func(name string) arrow.Field { return arrow.Field{Name: name, Type: arrow.BinaryTypes.String} }
	var fields []arrow.Field
	switch kind {
	case KindImageText:
		fields = []arrow.Field{id, {Name: "image", Type: imageType}, str("caption"), meta}
	case KindInterleaved:
		item := arrow.StructOf(
			arrow.Field{Name: "text", Type: arrow.BinaryTypes.String, Nullable: true},
			arrow.Field{Name: "image", Type: imageType, Nullable: true},
		)
		fields = []arrow.Field{id, {Name: "items", Type: arrow.ListOf(item)}, meta}
	case KindVideoText:
		fields = []arrow.Field{id, {Name: "frames", Type: arrow.ListOf(imageType)},
			{Name: "timestamps", Type: arrow.ListOf(arrow.PrimitiveTypes.Float64)}, str("caption"), meta}
	case KindText:
		fields = []arrow.Field{id, str("text"), meta}
	case KindConversation:
		turn := arrow.StructOf(
			arrow.Field{Name: "role", Type: arrow.BinaryTypes.String},
			arrow.Field{Name: "text", Type: arrow.BinaryTypes.String},
			arrow.Field{Name: "loss", Type: arrow.FixedWidthTypes.Boolean},
		)
		fields = []arrow.Field{id, {Name: "images", Type: arrow.ListOf(imageType)}, {Name: "turns", Type: arrow.ListOf(turn)}, meta}
	case KindTokens:
		fields = []arrow.Field{id, {Name: "tokens", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32)}, meta}
	default:
		return nil, fmt.Errorf("unknown sample kind %q", kind)
	}
	md := arrow.NewMetadata([]string{"loom.kind", "loom.schema_version"}, []string{string(kind), strconv.Itoa(SchemaVersion)})
	return arrow.NewSchema(fields, &md), nil
}

// appendImage appends im (or a null when im is nil) to a struct builder of
// imageType.
func appendImage(b *array.StructBuilder, im *Image) {
	if im == nil {
		b.AppendNull()
		return
	}
	b.Append(true)
	b.FieldBuilder(0).(*array.StringBuilder).Append(im.Format)
	b.FieldBuilder(1).(*array.Int32Builder).Append(int32(im.Width))
	b.FieldBuilder(2).(*array.Int32Builder).Append(int32(im.Height))
	b.FieldBuilder(3).(*array.BinaryBuilder).Append(im.Data)
}

// appendSample appends s to the record builder of kind's schema.
func appendSample(kind Kind, b *array.RecordBuilder, s *Sample) {
	b.Field(0).(*array.StringBuilder).Append(s.ID)
	last := b.Schema().NumFields() - 1
	if s.Meta == "" {
		b.Field(last).AppendNull()
	} else {
		b.Field(last).(*array.StringBuilder).Append(s.Meta)
	}
	switch kind {
	case KindImageText:
		appendImage(b.Field(1).(*array.StructBuilder), s.Image)
		b.Field(2).(*array.StringBuilder).Append(s.Caption)
	case KindInterleaved:
		lb := b.Field(1).(*array.ListBuilder)
		lb.Append(true)
		ib := lb.ValueBuilder().(*array.StructBuilder)
		for i := range s.Items {
			ib.Append(true)
			if s.Items[i].Image != nil {
				ib.FieldBuilder(0).AppendNull()
			} else {
				ib.FieldBuilder(0).(*array.StringBuilder).Append(s.Items[i].Text)
			}
			appendImage(ib.FieldBuilder(1).(*array.StructBuilder), s.Items[i].Image)
		}
	case KindVideoText:
		lb := b.Field(1).(*array.ListBuilder)
		lb.Append(true)
		fb := lb.ValueBuilder().(*array.StructBuilder)
		for i := range s.Frames {
			appendImage(fb, &s.Frames[i])
		}
		tb := b.Field(2).(*array.ListBuilder)
		tb.Append(true)
		tb.ValueBuilder().(*array.Float64Builder).AppendValues(s.Timestamps, nil)
		b.Field(3).(*array.StringBuilder).Append(s.Caption)
	case KindText:
		b.Field(1).(*array.StringBuilder).Append(s.Text)
	case KindConversation:
		lb := b.Field(1).(*array.ListBuilder)
		lb.Append(true)
		fb := lb.ValueBuilder().(*array.StructBuilder)
		for i := range s.Images {
			appendImage(fb, &s.Images[i])
		}
		tl := b.Field(2).(*array.ListBuilder)
		tl.Append(true)
		tb := tl.ValueBuilder().(*array.StructBuilder)
		for _, t := range s.Turns {
			tb.Append(true)
			tb.FieldBuilder(0).(*array.StringBuilder).Append(t.Role)
			tb.FieldBuilder(1).(*array.StringBuilder).Append(t.Text)
			tb.FieldBuilder(2).(*array.BooleanBuilder).Append(t.Loss)
		}
	case KindTokens:
		lb := b.Field(1).(*array.ListBuilder)
		lb.Append(true)
		lb.ValueBuilder().(*array.Int32Builder).AppendValues(s.Tokens, nil)
	}
}

// decodeImage reads row i of an imageType struct array (nil when null).
func decodeImage(a *array.Struct, i int) *Image {
	if a.IsNull(i) {
		return nil
	}
	data := a.Field(3).(*array.Binary).Value(i)
	return &Image{
		Format: a.Field(0).(*array.String).Value(i),
		Width:  int(a.Field(1).(*array.Int32).Value(i)),
		Height: int(a.Field(2).(*array.Int32).Value(i)),
		Data:   data[:len(data):len(data)], // references the batch buffer (see goAlloc)
	}
}

// decodeRecord converts every row of rec (whose schema was checked to be
// kind's) into samples.
func decodeRecord(kind Kind, rec arrow.RecordBatch) []Sample {
	n := int(rec.NumRows())
	out := make([]Sample, n)
	ids := rec.Column(0).(*array.String)
	metas := rec.Column(int(rec.NumCols()) - 1).(*array.String)
	for i := 0; i < n; i++ {
		out[i].ID = ids.Value(i)
		if metas.IsValid(i) {
			out[i].Meta = metas.Value(i)
		}
	}
	switch kind {
	case KindImageText:
		imgs := rec.Column(1).(*array.Struct)
		caps := rec.Column(2).(*array.String)
		for i := range out {
			out[i].Image = decodeImage(imgs, i)
			out[i].Caption = caps.Value(i)
		}
	case KindInterleaved:
		l := rec.Column(1).(*array.List)
		items := l.ListValues().(*array.Struct)
		texts := items.Field(0).(*array.String)
		imgs := items.Field(1).(*array.Struct)
		for i := range out {
			a, b := l.ValueOffsets(i)
			out[i].Items = make([]Item, 0, b-a)
			for j := int(a); j < int(b); j++ {
				it := Item{Image: decodeImage(imgs, j)}
				if texts.IsValid(j) {
					it.Text = texts.Value(j)
				}
				out[i].Items = append(out[i].Items, it)
			}
		}
	case KindVideoText:
		l := rec.Column(1).(*array.List)
		frames := l.ListValues().(*array.Struct)
		tl := rec.Column(2).(*array.List)
		ts := tl.ListValues().(*array.Float64)
		caps := rec.Column(3).(*array.String)
		for i := range out {
			a, b := l.ValueOffsets(i)
			for j := int(a); j < int(b); j++ {
				out[i].Frames = append(out[i].Frames, *decodeImage(frames, j))
			}
			a, b = tl.ValueOffsets(i)
			if b > a {
				out[i].Timestamps = append([]float64(nil), ts.Float64Values()[a:b]...)
			}
			out[i].Caption = caps.Value(i)
		}
	case KindText:
		texts := rec.Column(1).(*array.String)
		for i := range out {
			out[i].Text = texts.Value(i)
		}
	case KindConversation:
		l := rec.Column(1).(*array.List)
		imgs := l.ListValues().(*array.Struct)
		tl := rec.Column(2).(*array.List)
		turns := tl.ListValues().(*array.Struct)
		roles := turns.Field(0).(*array.String)
		texts := turns.Field(1).(*array.String)
		loss := turns.Field(2).(*array.Boolean)
		for i := range out {
			a, b := l.ValueOffsets(i)
			for j := int(a); j < int(b); j++ {
				out[i].Images = append(out[i].Images, *decodeImage(imgs, j))
			}
			a, b = tl.ValueOffsets(i)
			for j := int(a); j < int(b); j++ {
				out[i].Turns = append(out[i].Turns, Turn{Role: roles.Value(j), Text: texts.Value(j), Loss: loss.Value(j)})
			}
		}
	case KindTokens:
		l := rec.Column(1).(*array.List)
		vals := l.ListValues().(*array.Int32)
		for i := range out {
			a, b := l.ValueOffsets(i)
			out[i].Tokens = append([]int32(nil), vals.Int32Values()[a:b]...)
		}
	}
	return out
}
