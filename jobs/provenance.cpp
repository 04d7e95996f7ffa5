#include "jobs/provenance.h"

#include "ckpt/checksum.h"
#include "common/fs_util.h"

namespace glvq {

nlohmann::json model_identity(JobContext& ctx) {
  nlohmann::json index = nlohmann::json::object();
  for (const auto& name : ctx.files->names()) {
    const TensorView& v = ctx.files->peek(name);
    index[name] = {dtype_name(v.dtype), v.shape, v.nbytes};
  }
  return {{"config_json", hash_json(ctx.model.raw)}, {"tensors", hash_json(index)}};
}

nlohmann::json inputs_provenance(JobContext& ctx, int first_block, const std::string& calib_tokens_hash) {
  const auto& c = ctx.cfg.calib;
  nlohmann::json calib = {{"ctx", c.ctx}, {"samples", c.samples}, {"seed", c.seed}, {"micro_batch", c.micro_batch}};
  // The file holds the activations as the rank holds them; float32 stays out so older files match.
  if (c.activation_dtype != "float32") calib["activation_dtype"] = c.activation_dtype;
  return {{"kind", "calibration inputs"}, {"first_block", first_block}, {"model", model_identity(ctx)},
          {"calib", calib}, {"calib_tokens", calib_tokens_hash}};
}

nlohmann::json block_provenance(JobContext& ctx, int block, const nlohmann::json& inputs_prov) {
  nlohmann::json sums = nlohmann::json::object();
  for (const auto& name : block_tensor_names(block)) {
    const TensorView& v = ctx.files->get(name);
    sums[name] = checksum_bytes(v.data, v.nbytes);
  }
  nlohmann::json q = quant_config_to_json(ctx.cfg);
  return {{"block", block},
          {"quant_config", q},
          {"quant_config_hash", hash_json(q)},
          {"model_checksums", sums},
          // With quantized propagation a block's inputs depend on where its rank's range starts.
          {"inputs", inputs_prov},
          {"git_commit", GLVQ_GIT_COMMIT}};
}

}  // namespace glvq
