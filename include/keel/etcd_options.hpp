// keel: etcd_options (etcd/options.hpp), what EtcdPolicy (<keel/etcd.hpp>)
// opens with, under the name store_config (<keel/open_store.hpp>) and users
// include it by. Needs no libcurl.
#pragma once

#include "etcd/options.hpp"
