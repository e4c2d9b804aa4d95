// keel/memory/keyspaces.hpp - the memory store's keyspaces (issue 27): the
// edits of the immutable table of non-default keyspaces (versions.hpp's
// keyspace_table) and the application of a batch's ops to one keyspace's
// tree. Needs no library.
//
// Thread safety: pure functions over immutable inputs; the policy calls
// them with the writers' mutex held and publishes what they return.
// Errors: allocation failures throw (std::bad_alloc); nothing was published
// then.
#pragma once

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../contract.hpp"
#include "../detail/keyspace_text.hpp"
#include "../error.hpp"
#include "../write_batch.hpp"
#include "btree.hpp"
#include "versions.hpp"

namespace keel::detail {

inline keel::error keyspace_missing(std::string_view name) {
  return keel::error(errc::not_found, "memory store: no keyspace " + keyspace_text(name));
}
inline keel::error keyspace_dropped(std::string_view name) {
  return keel::error(errc::not_found, "memory store: keyspace " + keyspace_text(name) +
                                          " was dropped since this handle was opened (a keyspace created "
                                          "again under that name is a new one; open it again)");
}

// `table` (may be null) with `root` added, or replacing the entry of the
// same name: a new table, sorted by name.
inline std::shared_ptr<const keyspace_table> with_keyspace(const keyspace_table* table,
                                                           std::shared_ptr<const keyspace_root> root) {
  auto next = std::make_shared<keyspace_table>();
  if (table) next->reserve(table->size() + 1);
  if (table) *next = *table;
  auto it = std::lower_bound(next->begin(), next->end(), std::string_view(root->name),
                             [](const auto& r, std::string_view n) { return std::string_view(r->name) < n; });
  if (it != next->end() && (*it)->name == root->name)
    *it = std::move(root);
  else
    next->insert(it, std::move(root));
  return next;
}

// `table` without the keyspace `name` (null when none is left).
inline std::shared_ptr<const keyspace_table> without_keyspace(const keyspace_table& table, std::string_view name) {
  auto next = std::make_shared<keyspace_table>();
  next->reserve(table.size());
  for (const auto& r : table)
    if (r->name != name) next->push_back(r);
  if (next->empty()) return nullptr;
  return next;
}

// The table of `version` for making keyspace `r` (an entry of it, not its
// hot keyspace) the hot one: the hot keyspace's tree (if any) back in its
// entry, `r`'s entry with an empty tree (its tree goes to the version).
inline std::shared_ptr<const keyspace_table> table_for_hot(const store_version& version, const keyspace_root& r) {
  auto next = std::make_shared<keyspace_table>(*version.table);
  for (auto& e : *next) {
    if (e->id == version.hot_id)
      e = std::make_shared<const keyspace_root>(keyspace_root{e->name, e->id, version.hot});
    else if (e->id == r.id)
      e = std::make_shared<const keyspace_root>(keyspace_root{e->name, e->id, persistent_btree()});
  }
  return next;
}

// Writers' mutex held, keyspace (name, id) (not "") in the current
// version: publishes `next` as its tree, and it as the hot keyspace.
inline void publish_keyspace(memory_versions& versions, std::string_view name, std::uint64_t id,
                             persistent_btree next) {
  const store_version& now = versions.writer_version();
  if (now.hot_id == id)
    versions.publish_hot(std::move(next), now.table, id);
  else
    versions.publish_hot(std::move(next), table_for_hot(now, *store_version::find_root(now.table.get(), name)), id);
}

// `base` with the ops of `batch` that name keyspace `keyspace` applied in
// order (the others skipped).
// `at`: the time the batch's ttls count from (puts with one get deadline at + ttl).
inline persistent_btree apply_keyspace_ops(persistent_btree base, const write_batch& batch,
                                           std::string_view keyspace, std::int64_t at = 0) {
  std::optional<persistent_btree::transient> edit(std::in_place, std::move(base));
  for (const auto& op : batch) {
    if (op.keyspace != keyspace) continue;
    switch (op.kind) {
      case write_batch::op_kind::put:
        edit->insert_or_assign(op.key, op.value, 0,
                               op.ttl.count() > 0 ? at + op.ttl.count() : pb_entry::no_deadline);
        break;
      case write_batch::op_kind::erase: edit->erase(op.key); break;
      case write_batch::op_kind::erase_range: {
        persistent_btree so_far = std::move(*edit).persist();
        edit.reset();
        edit.emplace(without_range(std::move(so_far), op.range()));
        break;
      }
    }
  }
  return std::move(*edit).persist();
}

// What a batch naming keyspaces writes to: the names besides "" (sorted,
// unique; views into the batch) and whether it has ops on "" too; a name
// over 255 bytes is invalid_argument.
struct batch_keyspace_names {
  std::vector<std::string_view> names;
  bool default_ops = false;
};
inline result<batch_keyspace_names> batch_keyspaces(const write_batch& batch) {
  batch_keyspace_names out;
  for (const auto& op : batch) {
    if (auto bad = keyspace_name_error(op.keyspace)) return *bad;
    if (op.keyspace.empty())
      out.default_ops = true;
    else
      out.names.push_back(op.keyspace);
  }
  std::sort(out.names.begin(), out.names.end());
  out.names.erase(std::unique(out.names.begin(), out.names.end()), out.names.end());
  return out;
}

// `table` with the ops of `batch` applied to the keyspaces `names`; not_found
// when one of them is not in the table (nothing changed: the table is
// immutable, the result is a new one).
inline result<std::shared_ptr<const keyspace_table>> apply_to_keyspaces(std::shared_ptr<const keyspace_table> table,
                                                                         const write_batch& batch,
                                                                         const std::vector<std::string_view>& names,
                                                                         std::int64_t at = 0) {
  for (std::string_view name : names) {
    if (!store_version::find_root(table.get(), name))
      return keel::error(errc::not_found, "memory store: no keyspace " + keyspace_text(name) + "; nothing was written");
  }
  for (std::string_view name : names) {
    const keyspace_root* r = store_version::find_root(table.get(), name);
    table = with_keyspace(table.get(), std::make_shared<const keyspace_root>(
                                           keyspace_root{r->name, r->id, apply_keyspace_ops(r->tree, batch, name, at)}));
  }
  return table;
}

// The ops of `batch` on the default keyspace, as a batch of their own.
inline write_batch default_keyspace_ops(const write_batch& batch) {
  write_batch out;
  for (const auto& op : batch) {
    if (!op.keyspace.empty()) continue;
    switch (op.kind) {
      case write_batch::op_kind::put:
        if (op.ttl.count() != 0)
          out.put(op.key, op.value, put_options{op.ttl});
        else
          out.put(op.key, op.value);
        break;
      case write_batch::op_kind::erase: out.erase(op.key); break;
      case write_batch::op_kind::erase_range: out.erase_range(op.range()); break;
    }
  }
  return out;
}

}  // namespace keel::detail
