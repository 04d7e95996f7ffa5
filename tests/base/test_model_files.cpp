// Model directories: index resolution, lazy shard opening, read accounting.
#include "model/model_files.h"

#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstring>
#include <map>
#include <thread>

namespace glvq {
namespace {

using json = nlohmann::json;
using test::expect_error;
using test::TempDir;

// Tensor I of a synthetic model: F32 [rows, 4] filled with I*1000 + index.
struct Synth {
  std::string name;
  std::string shard;
  int64_t rows;
  std::vector<float> data;
};

std::vector<Synth> synth_tensors() {
  std::vector<Synth> out;
  const char* shards[3] = {"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                           "model-00003-of-00003.safetensors"};
  for (int i = 0; i < 6; ++i) {
    Synth s;
    s.name = "model.layers." + std::to_string(i) + ".mlp.up_proj.weight";
    s.shard = shards[i / 2];
    s.rows = 1 + i;
    for (int64_t k = 0; k < s.rows * 4; ++k) s.data.push_back(static_cast<float>(i * 1000 + k));
    out.push_back(std::move(s));
  }
  return out;
}

// Writes the shards and model.safetensors.index.json into DIR.
void write_sharded(const TempDir& dir, const std::vector<Synth>& ts) {
  std::map<std::string, std::vector<TensorToWrite>> per_shard;
  json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", json::object()}};
  for (const Synth& s : ts) {
    per_shard[s.shard].push_back({s.name, DType::F32, {s.rows, 4}, s.data.data()});
    index["weight_map"][s.name] = s.shard;
  }
  for (const auto& kv : per_shard) write_safetensors(dir.file(kv.first), kv.second);
  test::write_bytes(dir.file("model.safetensors.index.json"), index.dump(2));
}

void expect_tensor(const TensorView& v, const Synth& s) {
  EXPECT_EQ(v.name, s.name);
  EXPECT_EQ(v.dtype, DType::F32);
  EXPECT_EQ(v.shape, (std::vector<int64_t>{s.rows, 4}));
  ASSERT_EQ(v.nbytes, s.data.size() * sizeof(float));
  EXPECT_EQ(std::memcmp(v.data, s.data.data(), v.nbytes), 0);
}

TEST(ModelFiles, ShardedLazyOpenAndAccounting) {
  TempDir dir;
  const auto ts = synth_tensors();
  write_sharded(dir, ts);
  ModelFiles mf(dir.path());
  EXPECT_EQ(mf.dir(), dir.path());
  EXPECT_EQ(mf.shards_opened(), 0u);

  EXPECT_EQ(mf.names().size(), ts.size());
  EXPECT_TRUE(mf.has(ts[0].name));
  EXPECT_FALSE(mf.has("lm_head.weight"));
  EXPECT_EQ(mf.shards_opened(), 0u) << "names()/has() come from the index";

  // ts[2] lives in shard 2 only.
  const TensorView& v = mf.get(ts[2].name);
  expect_tensor(v, ts[2]);
  EXPECT_EQ(v.file, dir.file(ts[2].shard));
  EXPECT_EQ(mf.shards_opened(), 1u);
  EXPECT_EQ(mf.tensors_read(), std::set<std::string>{ts[2].name});
  EXPECT_EQ(mf.bytes_read(), ts[2].data.size() * sizeof(float));

  // A second get of the same tensor and one from the same shard.
  mf.get(ts[2].name);
  expect_tensor(mf.get(ts[3].name), ts[3]);
  EXPECT_EQ(mf.shards_opened(), 1u);
  EXPECT_EQ(mf.tensors_read(), (std::set<std::string>{ts[2].name, ts[3].name}));
  EXPECT_EQ(mf.bytes_read(), (ts[2].data.size() + ts[3].data.size()) * sizeof(float));

  // peek opens shard 3's header but records no read.
  const TensorView& p = mf.peek(ts[5].name);
  EXPECT_EQ(p.shape, (std::vector<int64_t>{ts[5].rows, 4}));
  EXPECT_EQ(mf.shards_opened(), 2u);
  EXPECT_EQ(mf.tensors_read().size(), 2u);
  EXPECT_EQ(mf.bytes_read(), (ts[2].data.size() + ts[3].data.size()) * sizeof(float));
}

TEST(ModelFiles, ShardNeverAskedForIsNeverOpened) {
  TempDir dir;
  const auto ts = synth_tensors();
  write_sharded(dir, ts);
  // Shard 1 is garbage: touching it at all would throw.
  test::write_bytes(dir.file(ts[0].shard), "not a safetensors file");
  ModelFiles mf(dir.path());
  expect_tensor(mf.get(ts[4].name), ts[4]);
  EXPECT_EQ(mf.shards_opened(), 1u);
  expect_error([&] { mf.get(ts[0].name); }, {dir.file(ts[0].shard)});
}

TEST(ModelFiles, ConcurrentGetsOpenEachShardOnce) {
  TempDir dir;
  const auto ts = synth_tensors();
  write_sharded(dir, ts);
  ModelFiles mf(dir.path());
  std::vector<std::thread> threads;
  std::vector<int> ok(8, 0);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 50; ++rep) {
        const Synth& s = ts[(t + rep) % ts.size()];
        const TensorView& v = mf.get(s.name);
        if (v.nbytes == s.data.size() * sizeof(float) &&
            std::memcmp(v.data, s.data.data(), v.nbytes) == 0) {
          ++ok[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 8; ++t) EXPECT_EQ(ok[t], 50) << "thread " << t;
  EXPECT_EQ(mf.shards_opened(), 3u);
  EXPECT_EQ(mf.tensors_read().size(), ts.size());
  size_t total = 0;
  for (const Synth& s : ts) total += s.data.size() * sizeof(float);
  EXPECT_EQ(mf.bytes_read(), total);
}

TEST(ModelFiles, MissingTensorIsNamed) {
  TempDir dir;
  write_sharded(dir, synth_tensors());
  ModelFiles mf(dir.path());
  expect_error([&] { mf.get("model.layers.9.mlp.up_proj.weight"); },
               {"model.layers.9.mlp.up_proj.weight", dir.path()});
  expect_error([&] { mf.peek("lm_head.weight"); }, {"lm_head.weight", dir.path()});
  EXPECT_EQ(mf.shards_opened(), 0u);
  EXPECT_TRUE(mf.tensors_read().empty());
}

TEST(ModelFiles, IndexPointsToMissingShard) {
  TempDir dir;
  const auto ts = synth_tensors();
  write_sharded(dir, ts);
  std::remove(dir.file(ts[4].shard).c_str());
  expect_error([&] { ModelFiles mf(dir.path()); },
               {ts[4].shard, ts[4].name, "does not exist", "re-download"});
}

TEST(ModelFiles, IndexDisagreesWithShardHeader) {
  TempDir dir;
  const auto ts = synth_tensors();
  write_sharded(dir, ts);
  // The index claims ts[1] is in shard 3, whose header does not have it.
  json index = json::parse(test::read_bytes(dir.file("model.safetensors.index.json")));
  index["weight_map"][ts[1].name] = ts[5].shard;
  test::write_bytes(dir.file("model.safetensors.index.json"), index.dump());
  ModelFiles mf(dir.path());
  expect_error([&] { mf.get(ts[1].name); }, {ts[1].name, ts[5].shard, "no such tensor"});
  // The check runs when the shard is opened, whichever tensor is asked for.
  ModelFiles mf2(dir.path());
  expect_error([&] { mf2.get(ts[5].name); }, {ts[1].name, ts[5].shard});
}

TEST(ModelFiles, BadIndex) {
  TempDir dir;
  const std::string index = dir.file("model.safetensors.index.json");
  test::write_bytes(index, "{\"weight_map\": ");
  expect_error([&] { ModelFiles mf(dir.path()); }, {index, "not valid JSON"});
  test::write_bytes(index, R"({"metadata": {}})");
  expect_error([&] { ModelFiles mf(dir.path()); }, {index, "weight_map"});
  test::write_bytes(index, R"({"weight_map": {"w": 3}})");
  expect_error([&] { ModelFiles mf(dir.path()); }, {index, "w", "shard file name"});
}

TEST(ModelFiles, SingleFile) {
  const auto ts = synth_tensors();
  for (const char* fname : {"model.safetensors", "consolidated.safetensors"}) {
    SCOPED_TRACE(fname);
    TempDir dir;
    write_safetensors(dir.file(fname), {{ts[0].name, DType::F32, {ts[0].rows, 4}, ts[0].data.data()},
                                        {ts[1].name, DType::F32, {ts[1].rows, 4}, ts[1].data.data()}});
    ModelFiles mf(dir.path());
    EXPECT_EQ(mf.shards_opened(), 0u);
    EXPECT_EQ(mf.names(), (std::vector<std::string>{ts[0].name, ts[1].name}));
    EXPECT_TRUE(mf.has(ts[1].name));
    EXPECT_FALSE(mf.has("lm_head.weight"));
    expect_tensor(mf.get(ts[1].name), ts[1]);
    EXPECT_EQ(mf.shards_opened(), 1u);
    EXPECT_EQ(mf.tensors_read(), std::set<std::string>{ts[1].name});
    EXPECT_EQ(mf.bytes_read(), ts[1].data.size() * sizeof(float));
    expect_error([&] { mf.get("lm_head.weight"); }, {"lm_head.weight", dir.path()});
  }
}

TEST(ModelFiles, NoWeightsInDirectory) {
  TempDir dir;
  expect_error([&] { ModelFiles mf(dir.path()); }, {dir.path(), "safetensors"});
  expect_error([&] { ModelFiles mf(dir.file("absent")); }, {dir.file("absent"), "does not exist"});
  const float x[1] = {1.f};
  write_safetensors(dir.file("a.safetensors"), {{"w", DType::F32, {1}, x}});
  write_safetensors(dir.file("b.safetensors"), {{"v", DType::F32, {1}, x}});
  expect_error([&] { ModelFiles mf(dir.path()); },
               {dir.path(), "a.safetensors", "b.safetensors", "model.safetensors.index.json"});
}

TEST(ModelFiles, ShippedTinyLlama) {
  ModelFiles mf(test::source_dir() + "/models/tiny-llama");
  EXPECT_EQ(mf.shards_opened(), 0u);
  const std::string name = "model.layers.0.self_attn.k_proj.weight";
  ASSERT_TRUE(mf.has(name));
  const TensorView& v = mf.get(name);
  EXPECT_EQ(v.dtype, DType::BF16);
  EXPECT_EQ(v.shape, (std::vector<int64_t>{128, 384}));
  EXPECT_EQ(v.nbytes, 128u * 384u * 2u);
  EXPECT_EQ(mf.shards_opened(), 1u);
  EXPECT_EQ(mf.tensors_read(), std::set<std::string>{name});
  EXPECT_EQ(mf.bytes_read(), v.nbytes);
  // 6 layers x 9 tensors + embed, final norm, lm_head.
  EXPECT_EQ(mf.names().size(), 6u * 9u + 3u);
}

}  // namespace
}  // namespace glvq
