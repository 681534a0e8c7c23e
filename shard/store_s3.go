package shard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Config says how to reach an S3-compatible store. The same code serves
// AWS S3, versitygw, Ceph RGW and the embedded gofakes3 server.
type S3Config struct {
	Endpoint  string // host:port, or a URL (http:// means Secure=false)
	Bucket    string
	AccessKey string
	SecretKey string // never logged; String() redacts it
	Region    string // default us-east-1 (skips the bucket-location lookup)
	Secure    bool   // HTTPS
	PartSize  uint64 // multipart part size, default 16 MiB
	// Retry bounds retries of transient errors (zero value: DefaultRetryPolicy).
	Retry RetryPolicy
	// RequestTimeout bounds one attempt of one request, body included
	// (default 5 minutes); an attempt that times out is retried.
	RequestTimeout time.Duration
	// Transport overrides the HTTP transport (tests inject faults with it).
	Transport http.RoundTripper
}

// String describes the configuration without the secret key.
func (c S3Config) String() string {
	return fmt.Sprintf("s3{endpoint=%s bucket=%s access_key=%s secret_key=<redacted> secure=%v}", c.Endpoint, c.Bucket, c.AccessKey, c.Secure)
}

// S3Store is an ObjectStore on one bucket of an S3-compatible server, through
// minio-go. Range GETs are single requests (minio.Core); Put uploads from a
// seekable body of known size (parallel multipart above PartSize) with
// DisableContentSha256, which gofakes3 needs: with minio-go's default
// aws-chunked streaming signature over plain HTTP, gofakes3 v1.2.0 stores the
// chunk signatures inside multipart objects. Transient errors are retried
// under Retry; minio-go's own retries are off so the budget holds.
type S3Store struct {
	cfg   S3Config
	core  minio.Core
	retry *retrier
}

// NewS3Store connects (lazily: no request is made) to cfg.
func NewS3Store(cfg S3Config) (*S3Store, error) {
	ep := cfg.Endpoint
	switch {
	case strings.HasPrefix(ep, "http://"):
		ep, cfg.Secure = strings.TrimPrefix(ep, "http://"), false
	case strings.HasPrefix(ep, "https://"):
		ep, cfg.Secure = strings.TrimPrefix(ep, "https://"), true
	}
	ep = strings.TrimSuffix(ep, "/")
	if ep == "" {
		return nil, errors.New("s3: empty endpoint (set --s3-endpoint or LOOM_S3_ENDPOINT)")
	}
	if cfg.Bucket == "" {
		return nil, errors.New("s3: empty bucket")
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = 16 << 20
	}
	if cfg.Retry.Attempts == 0 {
		cfg.Retry = DefaultRetryPolicy
	}
	tr := cfg.Transport
	if tr == nil {
		t, err := minio.DefaultTransport(cfg.Secure)
		if err != nil {
			return nil, fmt.Errorf("s3 transport: %w", err)
		}
		t.MaxIdleConnsPerHost = 64
		tr = t
	}
	cl, err := minio.New(ep, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       cfg.Secure,
		Region:       cfg.Region,
		BucketLookup: minio.BucketLookupPath,
		Transport:    tr,
		MaxRetries:   1,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 client for %s: %w", ep, err)
	}
	cfg.Endpoint = ep
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 5 * time.Minute
	}
	rt := newRetrier(cfg.Retry)
	rt.timeout = cfg.RequestTimeout
	return &S3Store{cfg: cfg, core: minio.Core{Client: cl}, retry: rt}, nil
}

// Bucket returns the bucket name.
func (s *S3Store) Bucket() string { return s.cfg.Bucket }

// EnsureBucket creates the bucket if it does not exist.
func (s *S3Store) EnsureBucket(ctx context.Context) error {
	return s.retry.do(ctx, "create bucket "+s.cfg.Bucket, func(ctx context.Context) error {
		ok, err := s.core.BucketExists(ctx, s.cfg.Bucket)
		if err != nil {
			return s.wrap("bucket exists", "", err)
		}
		if ok {
			return nil
		}
		err = s.core.MakeBucket(ctx, s.cfg.Bucket, minio.MakeBucketOptions{Region: s.cfg.Region})
		if err != nil {
			code := minio.ToErrorResponse(err).Code
			if code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
				return nil
			}
			return s.wrap("make bucket", "", err)
		}
		return nil
	})
}

// wrap names the operation, bucket and key, and maps 404 to ErrNotFound.
func (s *S3Store) wrap(op, key string, err error) error {
	er := minio.ToErrorResponse(err)
	where := fmt.Sprintf("s3://%s/%s", s.cfg.Bucket, key)
	if er.StatusCode == http.StatusNotFound || er.Code == "NoSuchKey" {
		return fmt.Errorf("%s %s: %w", op, where, ErrNotFound)
	}
	if er.StatusCode != 0 {
		return fmt.Errorf("%s %s: HTTP %d %s: %w", op, where, er.StatusCode, er.Code, err)
	}
	return fmt.Errorf("%s %s: %w", op, where, err)
}

// Put implements ObjectStore. A body that is an io.ReadSeeker is uploaded
// from its current position (and re-read on retry); any other body is first
// spooled to a temporary file so that it can be retried and its length
// checked before anything is stored.
func (s *S3Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	rs, ok := r.(io.ReadSeeker)
	if !ok {
		f, err := os.CreateTemp("", "loom-put-*")
		if err != nil {
			return fmt.Errorf("put %q: spool: %w", key, err)
		}
		defer os.Remove(f.Name())
		defer f.Close()
		if err := readExactly(key, ctxReader{ctx, r}, f, size); err != nil {
			return fmt.Errorf("put: %w", err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("put %q: %w", key, err)
		}
		rs = f
	}
	start, err := rs.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	end, err := rs.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	if end-start != size {
		return fmt.Errorf("put %q: body has %d bytes, want %d", key, end-start, size)
	}
	var body io.Reader
	if ra, ok := rs.(io.ReaderAt); ok {
		body = io.NewSectionReader(ra, start, size)
	}
	return s.retry.do(ctx, "put "+key, func(ctx context.Context) error {
		if body == nil {
			if _, err := rs.Seek(start, io.SeekStart); err != nil {
				return &permanentError{err}
			}
			body = io.LimitReader(rs, size)
		} else if sk, ok := body.(io.Seeker); ok {
			if _, err := sk.Seek(0, io.SeekStart); err != nil {
				return &permanentError{err}
			}
		}
		info, err := s.core.Client.PutObject(ctx, s.cfg.Bucket, key, body, size, minio.PutObjectOptions{
			ContentType:          "application/octet-stream",
			PartSize:             s.cfg.PartSize,
			DisableContentSha256: true,
		})
		if _, isSec := body.(*io.SectionReader); !isSec {
			body = nil
		}
		if err != nil {
			return s.wrap("put", key, err)
		}
		if info.Size != size {
			return fmt.Errorf("put s3://%s/%s: server stored %d bytes, want %d", s.cfg.Bucket, key, info.Size, size)
		}
		return nil
	})
}

// StreamRange reads bytes [offset, offset+len(buf)) of key into buf,
// calling progress(filled) each time buf[:filled] has grown, so that a
// caller can use the first bytes of a long range while the rest is still
// arriving. A transient error (5xx, timeout, reset, short body) is retried
// with the store's policy, resuming at the first byte not yet received:
// buf[:filled] never changes once reported. An error from progress stops
// the read and is returned as is (it is not retried). A 4xx, or a range
// beyond the object's end, fails at once with the key in the message.
func (s *S3Store) StreamRange(ctx context.Context, key string, offset int64, buf []byte, progress func(filled int) error) error {
	if len(buf) == 0 {
		if err := ValidKey(key); err != nil {
			return err
		}
		return nil
	}
	return s.StreamSegments(ctx, key, offset, []int{len(buf)},
		func(int) []byte { return buf },
		func(_, filled int) error { return progress(filled) })
}

// StreamSegments is StreamRange into consecutive buffers: it reads bytes
// [offset, offset+sum(sizes)) of key with one GET (resumed after a
// transient error like StreamRange), segment i into a buffer of sizes[i]
// bytes that alloc(i) returns. alloc(i) is called only when segment i's
// first byte is about to be read, in order, so that allocating (and
// zeroing) large buffers overlaps the transfer instead of delaying the
// request, and each segment can be released on its own. progress(i, filled)
// is called each time segment i's buffer[:filled] has grown; it is final
// once reported. An error from progress stops the read and is returned as
// is. Every size must be positive.
func (s *S3Store) StreamSegments(ctx context.Context, key string, offset int64, sizes []int, alloc func(i int) []byte, progress func(i, filled int) error) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	if offset < 0 {
		return fmt.Errorf("object %q: negative range offset %d", key, offset)
	}
	var total int64
	for i, n := range sizes {
		if n <= 0 {
			return fmt.Errorf("object %q: segment %d of %d bytes", key, i, n)
		}
		total += int64(n)
	}
	if total == 0 {
		return nil
	}
	end := offset + total
	var done int64       // bytes received in all
	seg, segFill := 0, 0 // segment being read and its bytes received
	var buf []byte       // its buffer; nil until allocated
	var perr error       // from progress: stops the read, not retried
	err := s.retry.do(ctx, "get "+key, func(ctx context.Context) error {
		opts := minio.GetObjectOptions{}
		if err := opts.SetRange(offset+done, end-1); err != nil {
			return &permanentError{err}
		}
		rc, _, hdr, err := s.core.GetObject(ctx, s.cfg.Bucket, key, opts)
		if err != nil {
			if minio.ToErrorResponse(err).StatusCode == http.StatusRequestedRangeNotSatisfiable {
				return &permanentError{fmt.Errorf("get s3://%s/%s: range [%d, %d) beyond the object's end: %w", s.cfg.Bucket, key, offset, end, err)}
			}
			return s.wrap("get", key, err)
		}
		defer rc.Close()
		if total := rangeTotal(hdr.Get("Content-Range")); total >= 0 && end > total {
			return &permanentError{fmt.Errorf("get s3://%s/%s: range [%d, %d) beyond the object's size %d", s.cfg.Bucket, key, offset, end, total)}
		}
		for done < total {
			if buf == nil {
				if buf = alloc(seg); len(buf) != sizes[seg] {
					perr = fmt.Errorf("object %q: segment %d: buffer of %d bytes, want %d", key, seg, len(buf), sizes[seg])
					return &permanentError{perr}
				}
			}
			n, err := rc.Read(buf[segFill:])
			if n > 0 {
				segFill += n
				done += int64(n)
				if perr = progress(seg, segFill); perr != nil {
					return &permanentError{perr}
				}
				if segFill == len(buf) {
					seg, segFill, buf = seg+1, 0, nil
				}
			}
			if err != nil {
				if done == total {
					break
				}
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					return fmt.Errorf("get s3://%s/%s [%d, %d): got %d bytes: %w", s.cfg.Bucket, key, offset, end, done, errShortBody)
				}
				return s.wrap("get", key, err)
			}
		}
		return nil
	})
	if perr != nil {
		return perr
	}
	return err
}

// GetRange implements ObjectStore with one ranged GET per attempt.
func (s *S3Store) GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	if err := ValidKey(key); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("object %q: negative range offset %d", key, offset)
	}
	if length == 0 || (length < 0 && offset > 0) {
		// Zero-length and open-ended ranges need the size first.
		info, err := s.Stat(ctx, key)
		if err != nil {
			return nil, err
		}
		n, err := checkRange(key, info.Size, offset, length)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return []byte{}, nil
		}
		length = n
	}
	var out []byte
	err := s.retry.do(ctx, "get "+key, func(ctx context.Context) error {
		opts := minio.GetObjectOptions{}
		if length > 0 {
			if err := opts.SetRange(offset, offset+length-1); err != nil {
				return &permanentError{err}
			}
		}
		rc, _, hdr, err := s.core.GetObject(ctx, s.cfg.Bucket, key, opts)
		if err != nil {
			if minio.ToErrorResponse(err).StatusCode == http.StatusRequestedRangeNotSatisfiable {
				return &permanentError{fmt.Errorf("get s3://%s/%s: range [%d, %d) beyond the object's end: %w", s.cfg.Bucket, key, offset, offset+length, err)}
			}
			return s.wrap("get", key, err)
		}
		defer rc.Close()
		var buf []byte
		if total := rangeTotal(hdr.Get("Content-Range")); length > 0 && total >= 0 && offset+length > total {
			return &permanentError{fmt.Errorf("get s3://%s/%s: range [%d, %d) beyond the object's size %d", s.cfg.Bucket, key, offset, offset+length, total)}
		}
		if length > 0 {
			buf = make([]byte, length)
			n, err := io.ReadFull(rc, buf)
			if err != nil {
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					return fmt.Errorf("get s3://%s/%s [%d, %d): got %d bytes: %w", s.cfg.Bucket, key, offset, offset+length, n, errShortBody)
				}
				return s.wrap("get", key, err)
			}
		} else {
			buf, err = io.ReadAll(rc)
			if err != nil {
				return s.wrap("get", key, err)
			}
		}
		out = buf
		return nil
	})
	return out, err
}

// Stat implements ObjectStore.
func (s *S3Store) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := ValidKey(key); err != nil {
		return ObjectInfo{}, err
	}
	var info ObjectInfo
	err := s.retry.do(ctx, "stat "+key, func(ctx context.Context) error {
		oi, err := s.core.StatObject(ctx, s.cfg.Bucket, key, minio.StatObjectOptions{})
		if err != nil {
			return s.wrap("stat", key, err)
		}
		info = ObjectInfo{Key: key, Size: oi.Size, ModTime: oi.LastModified}
		return nil
	})
	return info, err
}

// List implements ObjectStore. A listing that fails before any object was
// delivered is retried; a failure after that is returned.
func (s *S3Store) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	delivered := false
	var fnErr error
	err := s.retry.do(ctx, "list "+prefix, func(ctx context.Context) error {
		lctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ch := s.core.Client.ListObjects(lctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true})
		for oi := range ch {
			if oi.Err != nil {
				err := s.wrap("list", prefix, oi.Err)
				if delivered {
					return &permanentError{err}
				}
				return err
			}
			if strings.HasSuffix(oi.Key, "/") {
				continue
			}
			delivered = true
			if err := fn(ObjectInfo{Key: oi.Key, Size: oi.Size, ModTime: oi.LastModified}); err != nil {
				fnErr = err
				cancel()
				for range ch {
				}
				return &permanentError{err}
			}
		}
		return nil
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}

// Delete implements ObjectStore.
func (s *S3Store) Delete(ctx context.Context, key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	return s.retry.do(ctx, "delete "+key, func(ctx context.Context) error {
		err := s.core.Client.RemoveObject(ctx, s.cfg.Bucket, key, minio.RemoveObjectOptions{})
		if err != nil {
			werr := s.wrap("delete", key, err)
			if errors.Is(werr, ErrNotFound) {
				return nil
			}
			return werr
		}
		return nil
	})
}

// rangeTotal parses the total size out of a Content-Range header
// ("bytes 0-9/100"), or returns -1.
func rangeTotal(h string) int64 {
	i := strings.LastIndexByte(h, '/')
	if i < 0 {
		return -1
	}
	n, err := strconv.ParseInt(h[i+1:], 10, 64)
	if err != nil {
		return -1
	}
	return n
}
