/*
 * The backing directory as a fill source: pread() of a descriptor of the version's file from
 * the tree's bounded pool (cache/tree.h), then a check that the file is still that version
 * (same inode, size and mtime), so bytes of a rewritten file never land in an older
 * version's chunk.
 */
#ifndef MOWS_CACHE_BACKING_H
#define MOWS_CACHE_BACKING_H

#include "cache/cache.h"

/* Register with cache_add_source(c, &cache_backing_source, tree) (a struct cache_tree *). */
extern const struct cache_source_ops cache_backing_source;

#endif
