package registry

import (
	"encoding/json"
	"fmt"
	"mime"
	"strings"
)

// Manifest media types the registry accepts.
const (
	mediaTypeOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeOCIIndex       = "application/vnd.oci.image.index.v1+json"
	mediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"

	// maxManifestSize is the largest manifest accepted. The spec says registries SHOULD
	// accept at least 4 MiB and SHOULD answer 413 beyond their limit.
	maxManifestSize = 4 << 20
)

// manifestJSON holds the fields of image manifests and indexes the registry looks at. Both
// OCI and Docker schema 2 formats fit it.
type manifestJSON struct {
	SchemaVersion *int              `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        *descriptorJSON   `json:"config"`
	Layers        []descriptorJSON  `json:"layers"`
	Manifests     []descriptorJSON  `json:"manifests"`
	Subject       *descriptorJSON   `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
}

type descriptorJSON struct {
	MediaType string   `json:"mediaType"`
	Digest    string   `json:"digest"`
	Size      int64    `json:"size"`
	URLs      []string `json:"urls"`
}

// parsedManifest is a validated manifest: what to record and what to check exists.
type parsedManifest struct {
	mediaType string
	rec       manifestRecord
	referrer  *descriptor // without Digest and Size, which the caller knows
}

// isForeignLayer reports whether a layer is not expected to be pushed to the registry
// (non-distributable OCI layers, Docker foreign layers).
func isForeignLayer(mt string) bool {
	return strings.Contains(mt, ".nondistributable.") || mt == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
}

// baseMediaType strips parameters from a Content-Type; generic JSON types count as unset.
func baseMediaType(ct string) string {
	if ct == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		mt = strings.TrimSpace(strings.SplitN(ct, ";", 2)[0])
	}
	mt = strings.ToLower(mt)
	switch mt {
	case "application/json", "application/octet-stream", "text/plain":
		return ""
	}
	return mt
}

// manifestError is a MANIFEST_INVALID reason.
type manifestError string

func (e manifestError) Error() string { return string(e) }

// parseManifest validates a manifest body pushed with the given Content-Type. The registry
// stores the bytes as they are; this only decides whether they are acceptable and extracts
// the references.
func parseManifest(body []byte, contentType string) (parsedManifest, error) {
	var m manifestJSON
	if err := json.Unmarshal(body, &m); err != nil {
		return parsedManifest{}, manifestError("manifest is not valid JSON: " + err.Error())
	}
	if m.SchemaVersion == nil || *m.SchemaVersion != 2 {
		return parsedManifest{}, manifestError("unsupported manifest schemaVersion: only 2 is accepted")
	}
	ct := baseMediaType(contentType)
	mt := m.MediaType
	switch {
	case mt != "" && ct != "" && mt != ct:
		return parsedManifest{}, manifestError(fmt.Sprintf("Content-Type %q does not match the manifest's mediaType %q", ct, mt))
	case mt == "":
		mt = ct
	}
	if mt == "" { // neither says; OCI allows omitting mediaType
		if m.Manifests != nil && m.Config == nil {
			mt = mediaTypeOCIIndex
		} else {
			mt = mediaTypeOCIManifest
		}
	}
	p := parsedManifest{mediaType: mt}
	switch mt {
	case mediaTypeOCIManifest, mediaTypeDockerManifest:
		if m.Config == nil {
			return parsedManifest{}, manifestError("image manifest has no config")
		}
		if m.Manifests != nil {
			return parsedManifest{}, manifestError("image manifest must not have manifests")
		}
		if !validDigest(m.Config.Digest) {
			return parsedManifest{}, manifestError(fmt.Sprintf("config has an invalid or unsupported digest %q", m.Config.Digest))
		}
		p.rec.Blobs = append(p.rec.Blobs, m.Config.Digest)
		for i, l := range m.Layers {
			if !validDigest(l.Digest) {
				return parsedManifest{}, manifestError(fmt.Sprintf("layer %d has an invalid or unsupported digest %q", i, l.Digest))
			}
			if l.Size < 0 {
				return parsedManifest{}, manifestError(fmt.Sprintf("layer %d has a negative size", i))
			}
			if isForeignLayer(l.MediaType) {
				continue
			}
			p.rec.Blobs = append(p.rec.Blobs, l.Digest)
		}
	case mediaTypeOCIIndex, mediaTypeDockerList:
		if m.Config != nil || m.Layers != nil {
			return parsedManifest{}, manifestError("index must not have config or layers")
		}
		for i, c := range m.Manifests {
			if !validDigest(c.Digest) {
				return parsedManifest{}, manifestError(fmt.Sprintf("manifest %d has an invalid or unsupported digest %q", i, c.Digest))
			}
			p.rec.Manifests = append(p.rec.Manifests, c.Digest)
		}
	default:
		return parsedManifest{}, manifestError(fmt.Sprintf("unsupported manifest media type %q", mt))
	}
	p.rec.MediaType = mt
	p.rec.Size = int64(len(body))
	p.rec.Blobs = dedup(p.rec.Blobs)
	p.rec.Manifests = dedup(p.rec.Manifests)
	if m.Subject != nil {
		if !validDigest(m.Subject.Digest) {
			return parsedManifest{}, manifestError(fmt.Sprintf("subject has an invalid or unsupported digest %q", m.Subject.Digest))
		}
		p.rec.Subject = m.Subject.Digest
		// The referrers API descriptor: the manifest's artifactType, else (for an image
		// manifest) its config's media type; an index without artifactType has none.
		at := m.ArtifactType
		if at == "" && m.Config != nil {
			at = m.Config.MediaType
		}
		p.referrer = &descriptor{MediaType: mt, ArtifactType: at, Annotations: m.Annotations}
	}
	return p, nil
}

// dedup removes repeated digests, keeping the first occurrence.
func dedup(s []string) []string {
	if len(s) < 2 {
		return s
	}
	seen := make(map[string]bool, len(s))
	out := make([]string, 0, len(s))
	for _, d := range s {
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}
