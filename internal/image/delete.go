package image

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/image"
	"github.com/opencontainers/go-digest"
	"go.etcd.io/bbolt"
)

// ImageTag gives the image source the name repo:tag (tag defaults to latest).
func (s *Service) ImageTag(ctx context.Context, source, repo, tag string) error {
	n, err := reference.ParseNormalizedNamed(repo)
	if err != nil {
		return errInvalid("%s", err.Error())
	}
	if tag != "" {
		if n, err = reference.WithTag(n, tag); err != nil {
			return errInvalid("%s", err.Error())
		}
	}
	target, err := checkTagTarget(n)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	var rec *imageRecord
	err = s.db.Update(func(tx *bbolt.Tx) error {
		var err error
		if rec, _, err = resolve(tx, source); err != nil {
			return err
		}
		rec.LastTagTime = now
		if err := putImage(tx, rec); err != nil {
			return err
		}
		return putRef(tx, target.String(), refRecord{ID: rec.ID, Created: now})
	})
	if err != nil {
		return err
	}
	s.publish(events.ActionTag, rec.ID.String(), eventAttrs(rec.Labels, reference.FamiliarString(target)))
	return nil
}

// deletion is the outcome of one delete transaction, applied (events, cleanup) after commit.
type deletion struct {
	records  []image.DeleteResponse
	untagged []string     // familiar names, for untag events
	image    *imageRecord // the image concerned
	deleted  bool         // whether the image itself was removed
}

func (d *deletion) untag(tx *bbolt.Tx, n reference.Named) error {
	if err := deleteRef(tx, n.String()); err != nil {
		return err
	}
	fam := reference.FamiliarString(n)
	d.records = append(d.records, image.DeleteResponse{Untagged: fam})
	d.untagged = append(d.untagged, fam)
	return nil
}

// ImageDelete untags ref and deletes the image when no name refers to it any more, following
// dockerd's rules (see daemon/images/image_delete.go): a name removes only that name unless it
// was the last one; an ID removes the image, which is a conflict when it has names in several
// repositories or a container uses it, unless forced.
func (s *Service) ImageDelete(ctx context.Context, ref string, force, noprune bool) ([]image.DeleteResponse, error) {
	var d deletion
	// Ask the in-use hook outside the write transaction (it may call back into the daemon);
	// retry if the name moved to another image meanwhile.
	for attempt := 0; ; attempt++ {
		var id digest.Digest
		if err := s.db.View(func(tx *bbolt.Tx) error {
			rec, _, err := resolve(tx, ref)
			if err == nil {
				id = rec.ID
			}
			return err
		}); err != nil {
			return nil, err
		}
		used := s.isInUse(id)
		err := s.db.Update(func(tx *bbolt.Tx) error {
			d = deletion{}
			rec, p, err := resolve(tx, ref)
			if err != nil {
				return err
			}
			if rec.ID != id {
				return errMoved
			}
			return s.deleteTx(tx, &d, rec, p, ref, force, used)
		})
		if errors.Is(err, errMoved) && attempt < 3 {
			continue
		}
		if err != nil {
			return nil, err
		}
		break
	}
	s.finishDelete(ctx, &d)
	return d.records, nil
}

var errMoved = errors.New("image name moved during delete")

func (s *Service) deleteTx(tx *bbolt.Tx, d *deletion, rec *imageRecord, p parsedRef, ref string, force, used bool) error {
	d.image = rec
	names, err := refsOf(tx, rec.ID)
	if err != nil {
		return err
	}
	refs := make([]reference.Named, 0, len(names))
	for _, n := range names {
		refs = append(refs, n.ref)
	}
	if p.byName {
		// A name was given (a name wins over an ID prefix that happens to look the same, as in
		// Docker): remove it; the image goes only with its last name.
		if used && len(refs) == 1 && !force {
			return errConflict("conflict: unable to remove repository reference %q (must force) - container is using its referenced image %s", ref, shortID(rec.ID))
		}
		target := p.named
		if err := d.untag(tx, target); err != nil {
			return err
		}
		refs = slices.DeleteFunc(refs, func(r reference.Named) bool { return r.String() == target.String() })
		if _, canonical := target.(reference.Canonical); !canonical {
			// If only digest references of that repository remain, they go too.
			tagLeft := slices.ContainsFunc(refs, func(r reference.Named) bool {
				_, c := r.(reference.Canonical)
				return !c && r.Name() == target.Name()
			})
			if !tagLeft {
				var keep []reference.Named
				for _, r := range refs {
					if _, c := r.(reference.Canonical); c && r.Name() == target.Name() {
						if err := d.untag(tx, r); err != nil {
							return err
						}
						continue
					}
					keep = append(keep, r)
				}
				refs = keep
			}
		}
		if len(refs) > 0 {
			return nil
		}
	} else if isSingleReference(refs) {
		if used && !force {
			return errConflict("conflict: unable to delete %s (must be forced) - image is being used by a container", shortID(rec.ID))
		}
		for _, r := range refs {
			if err := d.untag(tx, r); err != nil {
				return err
			}
		}
		refs = nil
	}
	if !force {
		if used {
			return errConflict("conflict: unable to delete %s (must be forced) - image is being used by a container", shortID(rec.ID))
		}
		if len(refs) > 1 {
			return errConflict("conflict: unable to delete %s (must be forced) - image is referenced in multiple repositories", shortID(rec.ID))
		}
	}
	for _, r := range refs {
		if err := d.untag(tx, r); err != nil {
			return err
		}
	}
	if err := tx.Bucket(bucketImages).Delete([]byte(rec.ID)); err != nil {
		return err
	}
	d.records = append(d.records, image.DeleteResponse{Deleted: rec.ID.String()})
	d.deleted = true
	return nil
}

// isSingleReference is dockerd's rule for deleting by ID without force: at most one tag, and
// digest references only of that tag's repository.
func isSingleReference(refs []reference.Named) bool {
	if len(refs) <= 1 {
		return len(refs) == 1
	}
	var single reference.Named
	canonical := map[string]struct{}{}
	for _, r := range refs {
		if _, ok := r.(reference.Canonical); ok {
			canonical[r.Name()] = struct{}{}
		} else if single == nil {
			single = r
		} else {
			return false
		}
	}
	if single == nil {
		single = refs[0]
	}
	_, ok := canonical[single.Name()]
	return len(canonical) == 1 && ok
}

// finishDelete publishes events and removes the deleted image's blobs and layer snapshots that
// no other image uses. It returns the bytes of the layers removed.
func (s *Service) finishDelete(ctx context.Context, d *deletion) uint64 {
	if d.image == nil {
		return 0
	}
	rec := d.image
	id := rec.ID.String()
	for range d.untagged {
		s.publish(events.ActionUnTag, id, eventAttrs(rec.Labels, id))
	}
	if !d.deleted {
		return 0
	}
	s.publish(events.ActionDelete, id, eventAttrs(rec.Labels, id))
	blobs := []digest.Digest{rec.Manifest.Digest, rec.Config.Digest}
	var snaps []string
	sizes := map[string]int64{}
	for i := len(rec.Layers) - 1; i >= 0; i-- {
		l := rec.Layers[i]
		blobs = append(blobs, l.Blob.Digest)
		snaps = append(snaps, l.ChainID.String())
		sizes[l.ChainID.String()] = l.Size
	}
	s.mu.Lock()
	removed, err := s.collectLocked(context.WithoutCancel(ctx), blobs, snaps)
	s.mu.Unlock()
	if err != nil {
		s.log.Warn("cleanup after image delete", "image", id, "err", err)
	}
	var reclaimed uint64
	for _, k := range removed {
		d.records = append(d.records, image.DeleteResponse{Deleted: k})
		reclaimed += uint64(max(sizes[k], 0))
	}
	return reclaimed
}

// ImagePrune removes dangling images (no names), or all images no container uses when all is
// true or the filter dangling=false is given. Filters: dangling, label, label!, until.
func (s *Service) ImagePrune(ctx context.Context, all bool, f Filters) (image.PruneReport, error) {
	var report image.PruneReport
	if err := checkFilters(f, "dangling", "label", "label!", "until"); err != nil {
		return report, err
	}
	dangling, set, err := boolFilter(f, "dangling")
	if err != nil {
		return report, err
	}
	danglingOnly := !all
	if set {
		danglingOnly = dangling && !all
	}
	until, untilSet, err := untilFilter(f, time.Now())
	if err != nil {
		return report, err
	}
	var cands []digest.Digest
	err = s.db.View(func(tx *bbolt.Tx) error {
		imgs, err := allImages(tx)
		if err != nil {
			return err
		}
		refs, err := refsByImage(tx)
		if err != nil {
			return err
		}
		for _, rec := range imgs {
			if danglingOnly && len(refs[rec.ID]) > 0 {
				continue
			}
			if untilSet && !rec.Created.Before(until) {
				continue
			}
			if !matchLabels(rec.Labels, f["label"]) {
				continue
			}
			if len(f["label!"]) > 0 && matchAnyLabel(rec.Labels, f["label!"]) {
				continue
			}
			cands = append(cands, rec.ID)
		}
		return nil
	})
	if err != nil {
		return report, err
	}
	for _, id := range cands {
		if err := ctx.Err(); err != nil {
			return report, err
		}
		if s.isInUse(id) {
			continue
		}
		var d deletion
		err := s.db.Update(func(tx *bbolt.Tx) error {
			d = deletion{}
			rec, err := getImage(tx, id)
			if err != nil || rec == nil {
				return err
			}
			names, err := refsOf(tx, id)
			if err != nil {
				return err
			}
			if danglingOnly && len(names) > 0 {
				return nil // tagged meanwhile
			}
			for _, n := range names {
				if err := d.untag(tx, n.ref); err != nil {
					return err
				}
			}
			if err := tx.Bucket(bucketImages).Delete([]byte(id)); err != nil {
				return err
			}
			d.records = append(d.records, image.DeleteResponse{Deleted: id.String()})
			d.image, d.deleted = rec, true
			return nil
		})
		if err != nil {
			return report, err
		}
		report.SpaceReclaimed += s.finishDelete(ctx, &d)
		report.ImagesDeleted = append(report.ImagesDeleted, d.records...)
	}
	if s.events != nil {
		s.events.Publish(events.ImageEventType, events.ActionPrune, "", map[string]string{"reclaimed": strconv.FormatUint(report.SpaceReclaimed, 10)})
	}
	return report, nil
}
