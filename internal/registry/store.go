package registry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/fsutil"
	bolt "go.etcd.io/bbolt"
	boltErrors "go.etcd.io/bbolt/errors"
)

// On-disk layout under the root:
//
//	registry.db             bbolt: repositories, tags, links, referrers, upload sessions
//	blobs/<alg>/<hex>       complete, verified content (layers, configs and manifests)
//	uploads/<session id>    the bytes received so far for one upload session
//	ingest/                 temporary files of single-request uploads
//
// Invariants, which make every crash point safe:
//   - a file under blobs/ is always complete and matches its name: content reaches it only by
//     rename after it was hashed, verified and fsynced (fsutil.WriteFileAtomic's dot-named
//     temporary files are the one exception and are removed on start);
//   - metadata changes are bbolt transactions, committed only after the files they point at are
//     durable. A crash between the rename and the commit leaves an unreferenced blob, which the
//     garbage collector removes; never a reference to missing content;
//   - an upload session's offset in bbolt is committed only after its bytes are fsynced, so on
//     start the session file is truncated back to the committed offset.
const (
	dbFile     = "registry.db"
	blobsDir   = "blobs"
	uploadsDir = "uploads"
	ingestDir  = "ingest"

	bucketRepos   = "repositories"
	bucketUploads = "uploads"
	// sub-buckets of one repository
	bucketTags      = "tags"      // tag -> manifest digest
	bucketManifests = "manifests" // digest -> manifestRecord (JSON)
	bucketBlobs     = "blobs"     // digest -> size (8 bytes, big endian)
	bucketReferrers = "referrers" // subject digest -> bucket{referrer digest -> descriptor (JSON)}

	// uploadTTL is how long an idle upload session survives a restart or a collection.
	uploadTTL = 24 * time.Hour
	// copyBufferSize is the buffer for streaming request bodies to disk.
	copyBufferSize = 1 << 20
)

// storeError is a sentinel error of the store. It is a constant type so the package keeps no
// initialised state.
type storeError string

func (e storeError) Error() string { return string(e) }

const (
	errNameUnknown     storeError = "repository name not known to registry"
	errBlobUnknown     storeError = "blob unknown to registry"
	errManifestUnknown storeError = "manifest unknown"
	errUploadUnknown   storeError = "blob upload unknown to registry"
	errDigestMismatch  storeError = "provided digest did not match uploaded content"
	errSizeMismatch    storeError = "provided length did not match content length"
)

// bodyError is a failure to read the request body: the client went away or sent less than
// it announced. It is the client's problem, not the server's.
type bodyError struct{ err error }

func (e bodyError) Error() string { return "reading request body: " + e.err.Error() }
func (e bodyError) Unwrap() error { return e.err }

// rangeError reports an out-of-order chunk: the upload is at offset.
type rangeError struct{ offset int64 }

func (e rangeError) Error() string {
	return fmt.Sprintf("chunk does not start at the current upload offset %d", e.offset)
}

// missingError lists the descriptors of a manifest that the repository does not hold.
type missingError struct{ digests []string }

func (e missingError) Error() string {
	return "manifest references unknown content: " + strings.Join(e.digests, ", ")
}

// manifestRecord is what the repository knows of one manifest. The bytes live in blobs/.
type manifestRecord struct {
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"`
	// Subject is the digest of the manifest's subject, if any.
	Subject string `json:"subject,omitempty"`
	// Blobs are the config and layer digests stored in this registry (not foreign layers).
	Blobs []string `json:"blobs,omitempty"`
	// Manifests are the children of an index.
	Manifests []string `json:"manifests,omitempty"`
}

// descriptor is an OCI content descriptor as the referrers API returns it.
type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// session is the persisted state of one upload.
type session struct {
	Repo    string    `json:"repo"`
	Offset  int64     `json:"offset"`
	Updated time.Time `json:"updated"`
	// SHA256 is the marshalled sha256 state after Offset bytes, so that closing a sha256
	// upload does not read the data again.
	SHA256 []byte `json:"sha256,omitempty"`
}

// store is the registry's content and metadata. Its methods are safe for concurrent use.
type store struct {
	root string
	db   *bolt.DB
	log  *slog.Logger

	bufs sync.Pool // *[]byte of copyBufferSize

	// sessions serialises requests on one upload session; uploads to different sessions run
	// in parallel.
	sessions keyedMutex
}

// openStore opens (creating it if needed) the registry under root. lockTimeout bounds the wait
// for bbolt's exclusive file lock: 0 waits forever.
func openStore(root string, lockTimeout time.Duration, log *slog.Logger) (*store, error) {
	for _, d := range []string{
		root,
		filepath.Join(root, blobsDir, algSHA256),
		filepath.Join(root, blobsDir, algSHA512),
		filepath.Join(root, uploadsDir),
		filepath.Join(root, ingestDir),
	} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create registry directory: %w", err)
		}
	}
	db, err := bolt.Open(filepath.Join(root, dbFile), 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		if errors.Is(err, boltErrors.ErrTimeout) {
			return nil, fmt.Errorf("registry root %s is in use by another process (a running `berth registry serve` or `berth registry garbage-collect`)", root)
		}
		return nil, fmt.Errorf("open registry database: %w", err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range []string{bucketRepos, bucketUploads} {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("initialise registry database: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &store{root: root, db: db, log: log}
	s.bufs.New = func() any { b := make([]byte, copyBufferSize); return &b }
	return s, nil
}

func (s *store) close() error { return s.db.Close() }

func (s *store) blobPath(alg, hex string) string {
	return filepath.Join(s.root, blobsDir, alg, hex)
}

func (s *store) uploadPath(id string) string {
	return filepath.Join(s.root, uploadsDir, id)
}

// digestPath is blobPath for a digest already validated by parseDigest.
func (s *store) digestPath(dgst string) string {
	alg, hex, _ := parseDigest(dgst)
	return s.blobPath(alg, hex)
}

func newHash(alg string) hash.Hash {
	if alg == algSHA512 {
		return sha512.New()
	}
	return sha256.New()
}

func sizeBytes(n int64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	return b[:]
}

func bytesSize(b []byte) int64 {
	if len(b) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}

// repoBucket returns the bucket of an existing repository, or nil.
func repoBucket(tx *bolt.Tx, name string) *bolt.Bucket {
	return tx.Bucket([]byte(bucketRepos)).Bucket([]byte(name))
}

// ensureRepo returns the bucket of a repository, creating it and its sub-buckets.
func ensureRepo(tx *bolt.Tx, name string) (*bolt.Bucket, error) {
	rb, err := tx.Bucket([]byte(bucketRepos)).CreateBucketIfNotExists([]byte(name))
	if err != nil {
		return nil, fmt.Errorf("create repository %s: %w", name, err)
	}
	for _, sub := range []string{bucketTags, bucketManifests, bucketBlobs, bucketReferrers} {
		if _, err := rb.CreateBucketIfNotExists([]byte(sub)); err != nil {
			return nil, fmt.Errorf("create repository %s: %w", name, err)
		}
	}
	return rb, nil
}

func sub(rb *bolt.Bucket, name string) *bolt.Bucket { return rb.Bucket([]byte(name)) }

// ---- blobs -----------------------------------------------------------------------------

// openBlob opens a blob linked into repository name.
func (s *store) openBlob(name, dgst string) (*os.File, int64, error) {
	err := s.db.View(func(tx *bolt.Tx) error {
		rb := repoBucket(tx, name)
		if rb == nil {
			return errBlobUnknown
		}
		if sub(rb, bucketBlobs).Get([]byte(dgst)) == nil {
			return errBlobUnknown
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return s.openContent(dgst)
}

// openContent opens the content of a digest regardless of repository links.
func (s *store) openContent(dgst string) (*os.File, int64, error) {
	f, err := os.Open(s.digestPath(dgst))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			s.log.Warn("registry: linked content is missing on disk", "digest", dgst)
			return nil, 0, errBlobUnknown
		}
		return nil, 0, fmt.Errorf("open blob %s: %w", dgst, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, fmt.Errorf("stat blob %s: %w", dgst, err)
	}
	return f, fi.Size(), nil
}

// unlinkBlob removes a blob from a repository. The content stays until garbage collection.
func (s *store) unlinkBlob(name, dgst string) error {
	return s.deleteKey(name, bucketBlobs, dgst, errBlobUnknown, errBlobUnknown)
}

// deleteKey deletes key from one of repository name's buckets; noRepo and noKey are the
// errors for a repository or a key that does not exist.
func (s *store) deleteKey(name, bucket, key string, noRepo, noKey error) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		rb := repoBucket(tx, name)
		if rb == nil {
			return noRepo
		}
		b := sub(rb, bucket)
		if b.Get([]byte(key)) == nil {
			return noKey
		}
		return b.Delete([]byte(key))
	})
}

// mountBlob links a blob into name. With from set the blob must be linked in from; without
// it, content that is present in the store is enough. It returns the size and whether the
// blob could be mounted.
func (s *store) mountBlob(name, from, dgst string) (int64, bool, error) {
	var size int64
	mounted := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		if from != "" {
			fb := repoBucket(tx, from)
			if fb == nil {
				return nil
			}
			v := sub(fb, bucketBlobs).Get([]byte(dgst))
			if v == nil {
				return nil
			}
			size = bytesSize(v)
		} else {
			fi, err := os.Stat(s.digestPath(dgst))
			if err != nil {
				return nil
			}
			size = fi.Size()
		}
		if _, err := os.Stat(s.digestPath(dgst)); err != nil {
			return nil
		}
		rb, err := ensureRepo(tx, name)
		if err != nil {
			return err
		}
		mounted = true
		return sub(rb, bucketBlobs).Put([]byte(dgst), sizeBytes(size))
	})
	return size, mounted, err
}

func (s *store) getBuf() *[]byte  { return s.bufs.Get().(*[]byte) }
func (s *store) putBuf(b *[]byte) { s.bufs.Put(b) }

// copyLimited copies src to dst and into h. With want >= 0 it copies exactly want bytes and
// fails with errSizeMismatch if src holds fewer or more.
func (s *store) copyLimited(ctx context.Context, dst io.Writer, src io.Reader, h hash.Hash, want int64) (int64, error) {
	bp := s.getBuf()
	defer s.putBuf(bp)
	buf := *bp
	if want >= 0 {
		src = io.LimitReader(src, want+1)
	}
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		m, rerr := src.Read(buf)
		if m > 0 {
			if want >= 0 && n+int64(m) > want {
				return n, errSizeMismatch
			}
			if _, err := dst.Write(buf[:m]); err != nil {
				return n, fmt.Errorf("write upload: %w", err)
			}
			h.Write(buf[:m])
			n += int64(m)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return n, bodyError{err: rerr}
		}
	}
	if want >= 0 && n != want {
		return n, errSizeMismatch
	}
	return n, nil
}

// putBlob streams a whole blob (a single-request upload) into the store and links it into
// name. want is the expected length or -1.
func (s *store) putBlob(ctx context.Context, name, dgst string, r io.Reader, want int64) (int64, error) {
	alg, hexd, _ := parseDigest(dgst)
	f, err := os.CreateTemp(filepath.Join(s.root, ingestDir), "blob-*")
	if err != nil {
		return 0, fmt.Errorf("create ingest file: %w", err)
	}
	tmp := f.Name()
	defer func() {
		_ = f.Close()
		_ = os.Remove(tmp) // a no-op after the rename
	}()
	h := newHash(alg)
	n, err := s.copyLimited(ctx, f, r, h, want)
	if err != nil {
		return 0, err
	}
	if hex.EncodeToString(h.Sum(nil)) != hexd {
		return 0, errDigestMismatch
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("fsync blob: %w", err)
	}
	if err := s.commitFile(tmp, alg, hexd); err != nil {
		return 0, err
	}
	return n, s.db.Update(func(tx *bolt.Tx) error {
		rb, err := ensureRepo(tx, name)
		if err != nil {
			return err
		}
		return sub(rb, bucketBlobs).Put([]byte(dgst), sizeBytes(n))
	})
}

// commitFile renames a complete, fsynced file into blobs/ and makes the rename durable. If
// the content is already there the identical bytes simply replace it.
func (s *store) commitFile(tmp, alg, hexd string) error {
	dst := s.blobPath(alg, hexd)
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("commit blob %s:%s: %w", alg, hexd, err)
	}
	return fsutil.SyncDir(filepath.Dir(dst))
}

// writeContent stores bytes already in memory (manifests) under their digest.
func (s *store) writeContent(alg, hexd string, data []byte) error {
	dst := s.blobPath(alg, hexd)
	if fi, err := os.Stat(dst); err == nil && fi.Size() == int64(len(data)) {
		return nil // content-addressed: the bytes are already there
	}
	return fsutil.WriteFileAtomic(dst, data, 0o600)
}

// ---- upload sessions -------------------------------------------------------------------

// newSessionID returns a random (version 4) UUID.
func newSessionID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate upload id: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], nil
}

// startUpload creates an empty upload session for repository name.
func (s *store) startUpload(name string) (string, error) {
	id, err := newSessionID()
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(s.uploadPath(id), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("create upload: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("create upload: %w", err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return putSession(tx, id, session{Repo: name, Updated: time.Now().UTC()})
	})
	if err != nil {
		_ = os.Remove(s.uploadPath(id))
		return "", fmt.Errorf("record upload: %w", err)
	}
	return id, nil
}

func putSession(tx *bolt.Tx, id string, sess session) error {
	v, err := json.Marshal(sess)
	if err != nil {
		return err
	}
	return tx.Bucket([]byte(bucketUploads)).Put([]byte(id), v)
}

func getSession(tx *bolt.Tx, name, id string) (session, error) {
	v := tx.Bucket([]byte(bucketUploads)).Get([]byte(id))
	if v == nil {
		return session{}, errUploadUnknown
	}
	var sess session
	if err := json.Unmarshal(v, &sess); err != nil {
		return session{}, fmt.Errorf("decode upload %s: %w", id, err)
	}
	if sess.Repo != name {
		return session{}, errUploadUnknown
	}
	return sess, nil
}

// uploadStatus returns the offset of an upload session.
func (s *store) uploadStatus(name, id string) (int64, error) {
	var off int64
	err := s.db.View(func(tx *bolt.Tx) error {
		sess, err := getSession(tx, name, id)
		off = sess.Offset
		return err
	})
	return off, err
}

// appendUpload writes a chunk at the session's offset. start is the chunk's first byte from
// Content-Range (or -1 when absent: the chunk continues the upload) and length its declared
// length (or -1). It returns the new offset. On any failure the session is left as it was.
func (s *store) appendUpload(ctx context.Context, name, id string, r io.Reader, start, length int64) (int64, error) {
	unlock := s.sessions.lock(id)
	defer unlock()
	return s.appendLocked(ctx, name, id, r, start, length)
}

func (s *store) appendLocked(ctx context.Context, name, id string, r io.Reader, start, length int64) (int64, error) {
	var sess session
	if err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		sess, err = getSession(tx, name, id)
		return err
	}); err != nil {
		return 0, err
	}
	if start >= 0 && start != sess.Offset {
		return sess.Offset, rangeError{offset: sess.Offset}
	}
	f, err := os.OpenFile(s.uploadPath(id), os.O_WRONLY, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, errUploadUnknown
		}
		return 0, fmt.Errorf("open upload: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(sess.Offset, io.SeekStart); err != nil {
		return 0, fmt.Errorf("seek upload: %w", err)
	}
	// Continue the sha256 state if we have it; otherwise closing the upload rehashes the file.
	h := sha256.New()
	haveState := sess.Offset == 0
	if len(sess.SHA256) > 0 {
		if u, ok := h.(encoding.BinaryUnmarshaler); ok && u.UnmarshalBinary(sess.SHA256) == nil {
			haveState = true
		}
	}
	n, err := s.copyLimited(ctx, f, r, h, length)
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		// Drop whatever part of the chunk reached the file: the session stays at its offset.
		_ = f.Truncate(sess.Offset)
		return sess.Offset, err
	}
	sess.Offset += n
	sess.Updated = time.Now().UTC()
	sess.SHA256 = nil
	if m, ok := h.(encoding.BinaryMarshaler); ok && haveState {
		if st, err := m.MarshalBinary(); err == nil {
			sess.SHA256 = st
		}
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		if _, err := getSession(tx, name, id); err != nil {
			return err // cancelled meanwhile
		}
		return putSession(tx, id, sess)
	})
	if err != nil {
		return 0, err
	}
	return sess.Offset, nil
}

// finishUpload closes a session: it appends the final chunk (if any), verifies the whole
// upload against dgst and moves it into the store, linked into name. A digest mismatch ends
// the session (the spec treats any 4xx other than 416 as a failed upload).
func (s *store) finishUpload(ctx context.Context, name, id, dgst string, r io.Reader, start, length int64) (int64, error) {
	unlock := s.sessions.lock(id)
	defer unlock()
	if r != nil {
		if _, err := s.appendLocked(ctx, name, id, r, start, length); err != nil {
			return 0, err
		}
	}
	var sess session
	if err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		sess, err = getSession(tx, name, id)
		return err
	}); err != nil {
		return 0, err
	}
	alg, hexd, _ := parseDigest(dgst)
	sum, err := s.uploadSum(id, alg, sess)
	if err != nil {
		return 0, err
	}
	if sum != hexd {
		_ = s.cancelLocked(name, id)
		return 0, errDigestMismatch
	}
	// The bytes were fsynced by the appends; the rename makes them content.
	if err := s.commitFile(s.uploadPath(id), alg, hexd); err != nil {
		return 0, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		rb, err := ensureRepo(tx, name)
		if err != nil {
			return err
		}
		if err := sub(rb, bucketBlobs).Put([]byte(dgst), sizeBytes(sess.Offset)); err != nil {
			return err
		}
		return tx.Bucket([]byte(bucketUploads)).Delete([]byte(id))
	})
	return sess.Offset, err
}

// uploadSum is the hex digest of an upload's bytes.
func (s *store) uploadSum(id, alg string, sess session) (string, error) {
	if alg == algSHA256 && len(sess.SHA256) > 0 {
		h := sha256.New()
		if u, ok := h.(encoding.BinaryUnmarshaler); ok && u.UnmarshalBinary(sess.SHA256) == nil {
			return hex.EncodeToString(h.Sum(nil)), nil
		}
	}
	f, err := os.Open(s.uploadPath(id))
	if err != nil {
		return "", fmt.Errorf("open upload: %w", err)
	}
	defer f.Close()
	h := newHash(alg)
	bp := s.getBuf()
	defer s.putBuf(bp)
	if _, err := io.CopyBuffer(h, io.LimitReader(f, sess.Offset), *bp); err != nil {
		return "", fmt.Errorf("hash upload: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// cancelUpload deletes an upload session and its data.
func (s *store) cancelUpload(name, id string) error {
	unlock := s.sessions.lock(id)
	defer unlock()
	return s.cancelLocked(name, id)
}

func (s *store) cancelLocked(name, id string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		if _, err := getSession(tx, name, id); err != nil {
			return err
		}
		return tx.Bucket([]byte(bucketUploads)).Delete([]byte(id))
	})
	if err != nil {
		return err
	}
	if err := os.Remove(s.uploadPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove upload data: %w", err)
	}
	return nil
}

// ---- manifests, tags, referrers ----------------------------------------------------------

// resolveManifest finds a manifest by tag or digest. It returns its digest and record.
func (s *store) resolveManifest(name, ref string) (string, manifestRecord, error) {
	var rec manifestRecord
	dgst := ref
	err := s.db.View(func(tx *bolt.Tx) error {
		rb := repoBucket(tx, name)
		if rb == nil {
			return errManifestUnknown
		}
		if !strings.Contains(ref, ":") {
			v := sub(rb, bucketTags).Get([]byte(ref))
			if v == nil {
				return errManifestUnknown
			}
			dgst = string(v)
		}
		v := sub(rb, bucketManifests).Get([]byte(dgst))
		if v == nil {
			return errManifestUnknown
		}
		return json.Unmarshal(v, &rec)
	})
	return dgst, rec, err
}

// manifestPut is one manifest to store.
type manifestPut struct {
	name   string
	digest string
	body   []byte
	rec    manifestRecord
	tags   []string
	// referrer is the descriptor to list under rec.Subject, if the manifest has a subject.
	referrer *descriptor
}

// putManifest stores a manifest's bytes and records it (and its tags and referrer entry) in
// one transaction, which also checks that everything it references is in the repository.
func (s *store) putManifest(p manifestPut) error {
	// Check the references before writing the content, so that rejected manifests leave no
	// garbage; the check is repeated in the transaction that records the manifest, which is
	// what makes it atomic with respect to concurrent deletes.
	if err := s.db.View(func(tx *bolt.Tx) error { return checkRefs(repoBucket(tx, p.name), p.rec) }); err != nil {
		return err
	}
	alg, hexd, _ := parseDigest(p.digest)
	if err := s.writeContent(alg, hexd, p.body); err != nil {
		return err
	}
	recJSON, err := json.Marshal(p.rec)
	if err != nil {
		return fmt.Errorf("encode manifest record: %w", err)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		rb, err := ensureRepo(tx, p.name)
		if err != nil {
			return err
		}
		if err := checkRefs(rb, p.rec); err != nil {
			return err
		}
		mans := sub(rb, bucketManifests)
		// A manifest pushed again under another subject (impossible for the same bytes) or
		// again at all keeps a single referrers entry: the key is its digest.
		if err := mans.Put([]byte(p.digest), recJSON); err != nil {
			return err
		}
		for _, t := range p.tags {
			if err := sub(rb, bucketTags).Put([]byte(t), []byte(p.digest)); err != nil {
				return err
			}
		}
		if p.referrer != nil && p.rec.Subject != "" {
			rs, err := sub(rb, bucketReferrers).CreateBucketIfNotExists([]byte(p.rec.Subject))
			if err != nil {
				return err
			}
			v, err := json.Marshal(p.referrer)
			if err != nil {
				return err
			}
			if err := rs.Put([]byte(p.digest), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// checkRefs returns a missingError listing the blobs and child manifests of rec that the
// repository (nil: not created yet) lacks.
func checkRefs(rb *bolt.Bucket, rec manifestRecord) error {
	var missing []string
	if rb == nil {
		missing = append(append(missing, rec.Blobs...), rec.Manifests...)
	} else {
		blobs, mans := sub(rb, bucketBlobs), sub(rb, bucketManifests)
		for _, d := range rec.Blobs {
			if blobs.Get([]byte(d)) == nil {
				missing = append(missing, d)
			}
		}
		for _, d := range rec.Manifests {
			if mans.Get([]byte(d)) == nil {
				missing = append(missing, d)
			}
		}
	}
	if len(missing) > 0 {
		return missingError{digests: missing}
	}
	return nil
}

// deleteManifest removes a manifest, every tag that points at it and its referrers entry.
func (s *store) deleteManifest(name, dgst string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		rb := repoBucket(tx, name)
		if rb == nil {
			return errNameUnknown
		}
		return deleteManifestTx(rb, dgst)
	})
}

func deleteManifestTx(rb *bolt.Bucket, dgst string) error {
	mans := sub(rb, bucketManifests)
	v := mans.Get([]byte(dgst))
	if v == nil {
		return errManifestUnknown
	}
	var rec manifestRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return fmt.Errorf("decode manifest record %s: %w", dgst, err)
	}
	if err := mans.Delete([]byte(dgst)); err != nil {
		return err
	}
	tags := sub(rb, bucketTags)
	var drop [][]byte
	if err := tags.ForEach(func(k, v []byte) error {
		if string(v) == dgst {
			drop = append(drop, append([]byte(nil), k...))
		}
		return nil
	}); err != nil {
		return err
	}
	for _, k := range drop {
		if err := tags.Delete(k); err != nil {
			return err
		}
	}
	if rec.Subject != "" {
		refs := sub(rb, bucketReferrers)
		if rs := refs.Bucket([]byte(rec.Subject)); rs != nil {
			if err := rs.Delete([]byte(dgst)); err != nil {
				return err
			}
			if k, _ := rs.Cursor().First(); k == nil {
				if err := refs.DeleteBucket([]byte(rec.Subject)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// deleteTag removes one tag; the manifest stays.
func (s *store) deleteTag(name, tag string) error {
	return s.deleteKey(name, bucketTags, tag, errNameUnknown, errManifestUnknown)
}

// listTags returns up to n tags (n < 0: all) after last, in byte order, and whether more
// follow.
func (s *store) listTags(name, last string, n int) ([]string, bool, error) {
	tags := []string{}
	more := false
	err := s.db.View(func(tx *bolt.Tx) error {
		rb := repoBucket(tx, name)
		if rb == nil {
			return errNameUnknown
		}
		c := sub(rb, bucketTags).Cursor()
		var k []byte
		if last == "" {
			k, _ = c.First()
		} else {
			k, _ = c.Seek([]byte(last))
			if k != nil && string(k) == last {
				k, _ = c.Next()
			}
		}
		for ; k != nil; k, _ = c.Next() {
			if n >= 0 && len(tags) == n {
				more = true
				break
			}
			tags = append(tags, string(k))
		}
		return nil
	})
	return tags, more, err
}

// referrers lists the manifests of name whose subject is dgst, optionally only those of one
// artifact type. An unknown repository or subject has no referrers.
func (s *store) referrers(name, dgst, artifactType string) ([]descriptor, error) {
	out := []descriptor{}
	err := s.db.View(func(tx *bolt.Tx) error {
		rb := repoBucket(tx, name)
		if rb == nil {
			return nil
		}
		rs := sub(rb, bucketReferrers).Bucket([]byte(dgst))
		if rs == nil {
			return nil
		}
		return rs.ForEach(func(_, v []byte) error {
			var d descriptor
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("decode referrer: %w", err)
			}
			if artifactType == "" || d.ArtifactType == artifactType {
				out = append(out, d)
			}
			return nil
		})
	})
	return out, err
}

// ---- recovery ------------------------------------------------------------------------------

// recover removes what a crash or an abandoned client can leave behind: ingest files,
// temporary files under blobs/, upload files without a session and sessions without a file,
// and sessions idle for longer than ttl. A session file longer than its committed offset (a
// chunk that was being written) is cut back to the offset. It returns the number of upload
// sessions removed.
func (s *store) recover(now time.Time, ttl time.Duration) (int, error) {
	if err := clearDir(filepath.Join(s.root, ingestDir), func(string) bool { return true }); err != nil {
		return 0, err
	}
	for _, alg := range []string{algSHA256, algSHA512} {
		if err := clearDir(filepath.Join(s.root, blobsDir, alg), func(n string) bool { return strings.HasPrefix(n, ".") }); err != nil {
			return 0, err
		}
	}
	removed := 0
	known := map[string]bool{}
	err := s.db.Update(func(tx *bolt.Tx) error {
		ub := tx.Bucket([]byte(bucketUploads))
		var drop [][]byte
		err := ub.ForEach(func(k, v []byte) error {
			id := string(k)
			var sess session
			keep := json.Unmarshal(v, &sess) == nil && validSessionID(id) && now.Sub(sess.Updated) < ttl
			if keep {
				fi, err := os.Stat(s.uploadPath(id))
				switch {
				case err != nil || fi.Size() < sess.Offset:
					keep = false
				case fi.Size() > sess.Offset:
					if err := os.Truncate(s.uploadPath(id), sess.Offset); err != nil {
						keep = false
					}
				}
			}
			if keep {
				known[id] = true
			} else {
				drop = append(drop, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range drop {
			if err := ub.Delete(k); err != nil {
				return err
			}
		}
		removed = len(drop)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("recover upload sessions: %w", err)
	}
	err = clearDir(filepath.Join(s.root, uploadsDir), func(n string) bool { return !known[n] })
	return removed, err
}

// clearDir removes the entries of dir for which drop returns true.
func clearDir(dir string, drop func(name string) bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	for _, e := range entries {
		if drop(e.Name()) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("clean %s: %w", dir, err)
			}
		}
	}
	return nil
}

// keyedMutex is a set of mutexes by key, created on demand and freed when unused.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry // guarded by mu
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int // guarded by keyedMutex.mu
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
