#pragma once
/// Durable results of end-to-end fine-tuning (quant.finetune.e2e): in gather each
/// rank writes its tuned blocks as block files (ckpt/block_file.h) in <output_dir>/finetune/
/// (e2e-block-<k>.h5), each with a provenance naming the layers the tuning
/// started from (their fingerprint), its settings and its report. A gather run
/// again with --resume (after a stop in validate, or with validate settings
/// changed) reads them back instead of tuning again; any other settings or
/// starting layers tune again and replace them.
#include "config/config.h"
#include "quant/quantizer.h"

#include <nlohmann/json.hpp>

#include <map>
#include <string>

namespace glvq {

/// Checksum of LAYERS' names, arrays (bytes and shapes), attributes and recorded losses and
/// times: equal only for the same learned layers (a block learned again differs in its time).
std::string layers_fingerprint(const std::map<std::string, QuantizedLinear>& layers);

/// What the tuned layers depend on: the starting layers' FINGERPRINT, the e2e and shared
/// fine-tuning settings, the calibration sequences and the run's seed.
nlohmann::json e2e_provenance(const Config& cfg, const std::string& fingerprint);

/// "<output_dir>/finetune/e2e-block-<k>.h5".
std::string e2e_block_path(const std::string& output_dir, int block);

/// Writes the layers of blocks [FIRST, END) of LAYERS (a pipeline rank's, or every block's)
/// as one block file each with PROVENANCE and RESULT (the report's finetune_e2e), each
/// atomically. Throws glvq::Error naming the file.
void save_e2e_result(const std::string& output_dir, int first, int end,
                     const std::map<std::string, QuantizedLinear>& layers, const nlohmann::json& provenance,
                     const nlohmann::json& result);

/// True when all N_BLOCKS files exist, read back and were made under PROVENANCE: then LAYERS
/// holds their layers and RESULT the stored report. Otherwise false with WHY saying which
/// file and what differs; LAYERS and RESULT are untouched.
bool load_e2e_result(const std::string& output_dir, int n_blocks, const nlohmann::json& provenance,
                     std::map<std::string, QuantizedLinear>& layers, nlohmann::json& result, std::string& why);

}  // namespace glvq
