// The report writer (src/report): escaping, exact numbers, colour scale, chart
// geometry and the pages' structure, checked against independent references
// (strtod, a small tag-balance checker written here, hand-computed values).
#include "report/charts.h"
#include "report/page.h"
#include "report/run_view.h"
#include "report/svg.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <regex>
#include <sstream>

namespace glvq {
namespace {

// Independent well-formedness check of the markup: every tag closes in order, text and
// attribute values hold no raw '<', every '&' starts an entity. Returns "" when fine.
std::string markup_problem(const std::string& s) {
  static const std::regex entity("^&(amp|lt|gt|quot|#39|#[0-9]+);");
  std::vector<std::string> stack;
  size_t i = 0;
  if (s.compare(0, 15, "<!DOCTYPE html>") == 0) i = 15;
  if (s.compare(0, 5, "<?xml") == 0) i = s.find("?>") + 2;
  while (i < s.size()) {
    const char c = s[i];
    if (c == '&') {
      std::smatch m;
      const std::string rest = s.substr(i, 12);
      if (!std::regex_search(rest, m, entity)) return "bare & at " + std::to_string(i) + ": " + rest;
      i += m.length(0);
      continue;
    }
    if (c == '>') return "bare > at " + std::to_string(i);
    if (c != '<') { ++i; continue; }
    const size_t end = s.find('>', i);
    if (end == std::string::npos) return "unclosed tag at " + std::to_string(i);
    std::string tag = s.substr(i + 1, end - i - 1);
    if (tag.find('<') != std::string::npos) return "< inside a tag at " + std::to_string(i);
    // Attribute values: quoted, with no raw '&' outside entities.
    for (size_t a = tag.find('&'); a != std::string::npos; a = tag.find('&', a + 1)) {
      std::smatch m;
      const std::string rest = tag.substr(a, 12);
      if (!std::regex_search(rest, m, entity)) return "bare & in tag " + tag;
    }
    const bool closing = tag[0] == '/', self = tag.back() == '/';
    std::string name = tag.substr(closing ? 1 : 0);
    name = name.substr(0, name.find_first_of(" \t\n/"));
    if (closing) {
      if (stack.empty() || stack.back() != name) return "</" + name + "> closes " + (stack.empty() ? "nothing" : stack.back());
      stack.pop_back();
    } else if (!self) {
      stack.push_back(name);
    }
    i = end + 1;
  }
  return stack.empty() ? "" : "unclosed <" + stack.back() + ">";
}

TEST(ReportSvg, EscapesMarkupAndQuotes) {
  EXPECT_EQ(xml_escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
  EXPECT_EQ(xml_escape("plain text 1.5"), "plain text 1.5");
  // Valid UTF-8 stays; control characters, broken sequences, overlongs and surrogates become U+FFFD.
  EXPECT_EQ(xml_escape("\xC3\xA9t\xC3\xA9 \xE2\x86\x92"), "\xC3\xA9t\xC3\xA9 \xE2\x86\x92");
  EXPECT_EQ(xml_escape(std::string("a\x01z", 3)), "a\xEF\xBF\xBDz");
  EXPECT_EQ(xml_escape(std::string("\0", 1)), "\xEF\xBF\xBD");
  EXPECT_EQ(xml_escape("\xC3"), "\xEF\xBF\xBD");             // truncated sequence
  EXPECT_EQ(xml_escape("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong '/'
  EXPECT_EQ(xml_escape("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate D800
  EXPECT_EQ(xml_escape("\t\n"), "\t\n");
}

TEST(ReportSvg, EscapedRandomBytesAreMarkupFree) {
  std::mt19937 rng(21);
  std::printf("seed 21\n");
  for (int trial = 0; trial < 2000; ++trial) {
    std::string s(rng() % 40, '\0');
    for (char& c : s) c = static_cast<char>(rng() % 256);
    const std::string e = xml_escape(s);
    EXPECT_EQ(e.find_first_of("<>\"'"), std::string::npos) << e;
    EXPECT_EQ(markup_problem("<p>" + e + "</p>"), "");
    for (unsigned char c : e) EXPECT_TRUE(c >= 0x20 || c == '\t' || c == '\n' || c == '\r') << int(c);
  }
}

TEST(ReportSvg, ExactNumbersRoundTrip) {
  std::mt19937_64 rng(7);
  std::printf("seed 7\n");
  std::vector<double> vals = {0.0, -0.0, 0.1, 1.0 / 3, 4.25, 16, 1e-300, 5e-324, 1.7976931348623157e308,
                              4.966186483874753, 0.005030833080593597};
  for (int i = 0; i < 20000; ++i) {
    uint64_t bits = rng();
    double d;
    std::memcpy(&d, &bits, sizeof d);
    if (std::isfinite(d)) vals.push_back(d);
  }
  for (double v : vals) {
    const std::string s = num_exact(v);
    char* end = nullptr;
    const double back = std::strtod(s.c_str(), &end);
    ASSERT_EQ(*end, '\0') << s;
    ASSERT_EQ(std::memcmp(&back, &v, sizeof v), 0) << s << " does not read back as " << v;
  }
  EXPECT_EQ(num_exact(NAN), "nan");
  EXPECT_EQ(num_exact(-INFINITY), "-inf");
  EXPECT_EQ(num_short(0.0123456, 3), "0.0123");
  EXPECT_EQ(num_short(NAN), "-");
}

TEST(ReportSvg, HeatColourDarkensStrictlyWithValue) {
  // 8-bit channels: never lighter at any resolution, strictly darker at every 1/100 step.
  double prev = 2;
  for (int i = 0; i <= 2000; ++i) {
    const double lum = relative_luminance(heat_colour(i / 2000.0));
    EXPECT_LE(lum, prev) << "t = " << i / 2000.0;
    prev = lum;
  }
  prev = 2;
  for (int i = 0; i <= 100; ++i) {
    const double lum = relative_luminance(heat_colour(i / 100.0));
    EXPECT_LT(lum, prev) << "t = " << i / 100.0;
    prev = lum;
  }
  EXPECT_EQ(heat_colour(-1).hex(), heat_colour(0).hex());
  EXPECT_EQ(heat_colour(NAN).hex(), heat_colour(0).hex());
  EXPECT_EQ(heat_colour(7).hex(), heat_colour(1).hex());
  // Luminance reference values: white 1, black 0, sRGB mid grey 0x77 ~ 0.1845 (WCAG formula).
  EXPECT_DOUBLE_EQ(relative_luminance({255, 255, 255}), 1.0);
  EXPECT_DOUBLE_EQ(relative_luminance({0, 0, 0}), 0.0);
  EXPECT_NEAR(relative_luminance({0x77, 0x77, 0x77}), 0.18447, 1e-4);
  EXPECT_EQ((Rgb{255, 16, 0}.hex()), "#ff1000");
}

TEST(ReportSvg, LogScalePosition) {
  EXPECT_DOUBLE_EQ(*log_scale_position(1e-3, 1e-3, 1e-1), 0.0);
  EXPECT_DOUBLE_EQ(*log_scale_position(1e-1, 1e-3, 1e-1), 1.0);
  EXPECT_NEAR(*log_scale_position(1e-2, 1e-3, 1e-1), 0.5, 1e-12);
  EXPECT_NEAR(*log_scale_position(2e-3, 1e-3, 1e-1), std::log10(2.0) / 2, 1e-12);
  EXPECT_DOUBLE_EQ(*log_scale_position(5, 1e-3, 1e-1), 1.0);  // clamped
  EXPECT_DOUBLE_EQ(*log_scale_position(3, 3, 3), 0.5);
  EXPECT_FALSE(log_scale_position(0, 1e-3, 1).has_value());
  EXPECT_FALSE(log_scale_position(-1, 1e-3, 1).has_value());
  EXPECT_FALSE(log_scale_position(NAN, 1e-3, 1).has_value());
  EXPECT_FALSE(log_scale_position(1, 0, 1).has_value());
}

TEST(ReportSvg, WriterOutputIsWellFormed) {
  SvgWriter s(100, 50, "a <chart> & \"more\"");
  s.rect(1, 2, 3, 4, "#ffffff", "c", "tip <b>", 0.25);
  s.rect(1, 2, -3, 4, "#000000");
  s.text(5, 5, "x < y & z", "middle");
  s.circle(1, 1, 2, "red", "", 1.5, 2.5);
  s.polyline("1,2 3,4", "blue");
  s.line(0, 0, 1, 1, "black", 1, "4 2");
  const std::string out = s.finish();
  EXPECT_EQ(markup_problem(out), "") << out;
  EXPECT_NE(out.find("data-v=\"0.25\""), std::string::npos);
  EXPECT_NE(out.find("width=\"0.00\""), std::string::npos) << "negative widths clamp to 0";
  EXPECT_NE(out.find("x &lt; y &amp; z"), std::string::npos);
  EXPECT_NE(out.find("data-x=\"1.5\" data-y=\"2.5\""), std::string::npos);
}

TEST(ReportCharts, NiceTicksCoverTheRange) {
  std::mt19937 rng(3);
  std::printf("seed 3\n");
  std::uniform_real_distribution<double> u(-3, 3);
  for (int trial = 0; trial < 3000; ++trial) {
    const double a = u(rng) * std::pow(10.0, std::round(u(rng))), b = a + std::abs(u(rng)) * std::pow(10.0, u(rng));
    const auto t = nice_ticks(a, b);
    ASSERT_GE(t.size(), 4u) << a << " " << b;
    ASSERT_LE(t.size(), 11u) << a << " " << b;
    EXPECT_LE(t.front(), a + 1e-9 * std::abs(a));
    EXPECT_GE(t.back(), b - 1e-9 * std::abs(b));
    const double step = t[1] - t[0];
    const double mant = step / std::pow(10.0, std::floor(std::log10(step) + 1e-9));
    EXPECT_TRUE(std::abs(mant - 1) < 1e-6 || std::abs(mant - 2) < 1e-6 || std::abs(mant - 5) < 1e-6 ||
                std::abs(mant - 10) < 1e-6)
        << "step " << step;
    for (size_t k = 1; k < t.size(); ++k) EXPECT_NEAR(t[k] - t[k - 1], step, 1e-6 * step);
  }
  EXPECT_EQ(nice_ticks(4, 6), (std::vector<double>{4, 4.5, 5, 5.5, 6}));
}

LayerView layer(int block, const std::string& linear, double rel, std::map<int, int64_t> groups) {
  LayerView l;
  l.name = "model.layers." + std::to_string(block) + "." + linear + ".weight";
  l.block = block;
  l.linear = linear;
  l.out = 64, l.in = 128;
  l.method = "glvq";
  l.rel_loss = rel;
  l.loss = rel * 10;
  l.bit_groups = std::move(groups);
  return l;
}

TEST(ReportCharts, BitShareCountsGroupsAroundN) {
  const LayerView l = layer(0, "mlp.up_proj", 0.1, {{2, 1}, {3, 6}, {4, 2}, {7, 1}});
  const BitShare b = bit_share(l, 3);
  EXPECT_EQ(b.groups, 10);
  EXPECT_DOUBLE_EQ(b.lower, 0.1);
  EXPECT_DOUBLE_EQ(b.at, 0.6);
  EXPECT_DOUBLE_EQ(b.higher, 0.2);
  EXPECT_DOUBLE_EQ(b.other, 0.1);
  EXPECT_EQ(bit_share(LayerView{}, 3).groups, 0);
  RunView v;
  v.layers = {l, layer(1, "mlp.up_proj", 0.1, {{4, 20}})};
  EXPECT_EQ(*bit_share_target(v), 4) << "most common width without quant.bits";
  v.target_bits = 3;
  EXPECT_EQ(*bit_share_target(v), 3);
}

// The heatmap's cells, in value order, get strictly darker colours; cells carry their value.
TEST(ReportCharts, HeatmapColoursFollowTheValues) {
  RunView v;
  const std::vector<double> rel = {3e-3, 1e-4, 2e-2, 5e-3, 7e-4, 1e-1, 4e-4};
  for (size_t i = 0; i < rel.size(); ++i) v.layers.push_back(layer(static_cast<int>(i % 2), llama_linears()[i].first, rel[i], {}));
  const std::string svg = loss_heatmap_svg(v);
  ASSERT_EQ(markup_problem(svg), "");
  const std::regex cell("<rect [^>]*fill=\"#([0-9a-f]{6})\" class=\"heat-cell\" data-v=\"([^\"]+)\"");
  std::vector<std::pair<double, double>> value_lum;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), cell); it != std::sregex_iterator(); ++it) {
    const unsigned long c = std::stoul((*it)[1].str(), nullptr, 16);
    const Rgb rgb{static_cast<uint8_t>(c >> 16), static_cast<uint8_t>(c >> 8), static_cast<uint8_t>(c)};
    value_lum.emplace_back(std::strtod((*it)[2].str().c_str(), nullptr), relative_luminance(rgb));
  }
  ASSERT_EQ(value_lum.size(), rel.size());
  std::sort(value_lum.begin(), value_lum.end());
  for (size_t i = 0; i < rel.size(); ++i) EXPECT_EQ(value_lum[i].first, *std::next(std::set<double>(rel.begin(), rel.end()).begin(), static_cast<long>(i)));
  for (size_t i = 1; i < value_lum.size(); ++i) EXPECT_LT(value_lum[i].second, value_lum[i - 1].second);
  // Extremes take the ramp's ends.
  EXPECT_NE(svg.find("fill=\"" + heat_colour(0).hex() + "\" class=\"heat-cell\" data-v=\"0.0001\""), std::string::npos);
  EXPECT_NE(svg.find("fill=\"" + heat_colour(1).hex() + "\" class=\"heat-cell\" data-v=\"0.1\""), std::string::npos);
}

TEST(ReportView, JoinsCheckpointAndReport) {
  const nlohmann::json inspect = {
      {"kind", "checkpoint"},
      {"root", {{"method", "glvq"}, {"bits_per_weight", 3.5}, {"config", {{"quant", {{"bits", 3.0}}}}}}},
      {"layers",
       {{{"name", "model.layers.2.mlp.down_proj.weight"}, {"shape", {64, 256}}, {"method", "glvq"},
         {"bits", {{"total", 3.5}, {"codes", 3.0}}}, {"loss", 2.0}, {"loss_init", 8.0}, {"seconds", 1.5},
         {"bit_groups", {{"2", 3}, {"3", 10}, {"4", 3}}}},
        {{"name", "lm_head.weight"}, {"shape", {10, 64}}, {"method", "rtn"}}}}};
  const nlohmann::json report = {
      {"method", "glvq"}, {"bits_per_weight", 3.5}, {"ppl_fp", 5.0}, {"ppl_quant", 5.5},
      {"quality", {{"kl_mean", 0.01}, {"kl_p99", 0.2}, {"top1", 0.9}}},
      {"per_rank",
       {{{"rank", 0}, {"layer_losses", {{"model.layers.2.mlp.down_proj.weight",
                                        {{"loss", 2.0}, {"loss_init", 8.0}, {"rel_loss", 0.01}}}}}}}}};
  const RunView v = make_run_view(report, inspect, "runs/x", "test");
  ASSERT_EQ(v.layers.size(), 2u);
  const LayerView& l = v.layers[0];
  EXPECT_EQ(l.block, 2);
  EXPECT_EQ(l.linear, "mlp.down_proj");
  EXPECT_DOUBLE_EQ(*l.rel_loss, 0.01);
  EXPECT_DOUBLE_EQ(*l.rel_loss_init, 0.04) << "same reference: 0.01 x 8 / 2";
  EXPECT_DOUBLE_EQ(*l.code_bits, 3.0);
  EXPECT_EQ(v.layers[1].block, -1);
  EXPECT_EQ(*v.target_bits, 3);
  EXPECT_DOUBLE_EQ(*v.ppl_quant, 5.5);
  EXPECT_DOUBLE_EQ(*v.top1, 0.9);
  EXPECT_EQ(heatmap_metric(v), HeatMetric::kRelativeLoss);
  // Without the report the heatmap falls back to the absolute loss.
  EXPECT_EQ(heatmap_metric(make_run_view(std::nullopt, inspect, "x", "t")), HeatMetric::kLoss);
  test::expect_error([] { make_run_view(std::nullopt, std::nullopt, "x", "somewhere"); }, {"somewhere"});
}

TEST(ReportView, MissingOrBrokenReportJsonNamesTheFile) {
  test::TempDir d;
  test::expect_error([&] { load_run_dir(d.path()); }, {d.path() + "/report.json", "does not exist"});
  test::write_bytes(d.file("report.json"), "{\"ppl_fp\": 5.0, ");
  test::expect_error([&] { load_run_dir(d.path() + "/"); }, {d.path() + "/report.json", "not valid JSON"});
  test::write_bytes(d.file("report.json"), "[1, 2]");
  test::expect_error([&] { load_run_dir(d.path()); }, {"report.json", "not an object"});
  test::write_bytes(d.file("report.json"), "{\"method\": \"rtn\", \"ppl_quant\": 6.5, \"bits_per_weight\": 4.25}");
  const RunView v = load_run_dir(d.path() + "/");
  EXPECT_EQ(v.title, d.path().substr(d.path().find_last_of('/') + 1));
  EXPECT_DOUBLE_EQ(*v.ppl_quant, 6.5);
}

RunView sample_run(const std::string& name) {
  RunView v;
  v.title = "runs/<" + name + ">";
  v.source = "report.json & model.glvq.h5";
  v.model = "models/a&b";
  v.method = "glvq";
  v.target_bits = 3;
  v.bits_per_weight = 3.3125;
  v.code_bits_per_weight = 3.0;
  v.ppl_fp = 4.966186483874753;
  v.ppl_quant = 5.25;
  v.report = nlohmann::json{{"timings_s", {{"learn", 12.5}, {"total", 20.0}, {"odd<stage>", 1.0}}},
                            {"per_rank", {{{"rank", 0}, {"device", "cuda:0"}, {"blocks", {0, 2}}}}}};
  v.layers = {layer(0, "self_attn.q_proj", 0.002, {{2, 4}, {3, 10}, {4, 2}}),
              layer(1, "mlp.down_proj", 0.02, {{3, 16}}), layer(1, "weird,\"name\"", 0.5, {})};
  v.layers[2].name = "model.layers.1.weird,\"name\".weight";
  return v;
}

TEST(ReportPage, RunPageIsWellFormedAndCarriesExactNumbers) {
  const RunView v = sample_run("x");
  const std::string html = run_page_html(v);
  EXPECT_EQ(markup_problem(html), "");
  EXPECT_EQ(html.find("<script"), std::string::npos);
  for (const char* fetch : {" src=", " href=", "url(", "@import", "<link", "<img", "<iframe"})
    EXPECT_EQ(html.find(fetch), std::string::npos) << "nothing fetched: " << fetch;
  EXPECT_NE(html.find("glvq report: runs/&lt;x&gt;"), std::string::npos);
  EXPECT_NE(html.find("data-key=\"ppl_fp\" data-v=\"4.966186483874753\""), std::string::npos);
  EXPECT_NE(html.find("data-key=\"timings_s.odd&lt;stage&gt;\""), std::string::npos);
  EXPECT_NE(html.find("id=\"loss-heatmap\""), std::string::npos);
  EXPECT_NE(html.find("id=\"bit-map\""), std::string::npos);
  EXPECT_NE(html.find("class=\"bits-lower\" data-v=\"0.25\""), std::string::npos) << "4 of 16 groups at N-1";
}

TEST(ReportPage, CsvFieldsAndNumbersReadBack) {
  const RunView v = sample_run("x");
  const std::string csv = layers_csv(v);
  std::istringstream in(csv);
  std::string header, line;
  std::getline(in, header);
  EXPECT_EQ(header.substr(0, 20), "name,block,linear,ou");
  std::getline(in, line);
  EXPECT_EQ(line, "model.layers.0.self_attn.q_proj.weight,0,self_attn.q_proj,64,128,glvq,,,,0.002,,0.02,,16,4,10,2,0");
  std::getline(in, line);
  std::getline(in, line);
  EXPECT_EQ(line.substr(0, 42), "\"model.layers.1.weird,\"\"name\"\".weight\",1,\"");
  EXPECT_EQ(csv_field("a,b"), "\"a,b\"");
  EXPECT_EQ(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(csv_field("plain"), "plain");
}

TEST(ReportPage, ComparePageAndTables) {
  RunView a = sample_run("a"), b = sample_run("b|c"), fp = sample_run("fp");
  b.bits_per_weight = 4.25, b.ppl_quant = 5.0, b.method = "rtn";
  fp.ppl_quant.reset(), fp.method = "none";
  const std::vector<RunView> runs = {a, b, fp};
  const std::string html = compare_page_html(runs);
  EXPECT_EQ(markup_problem(html), "");
  // One point per quantized run, at its exact values; one FP line (all runs share ppl_fp).
  EXPECT_NE(html.find("data-x=\"3.3125\" data-y=\"5.25\""), std::string::npos);
  EXPECT_NE(html.find("data-x=\"4.25\" data-y=\"5\""), std::string::npos);
  size_t fp_lines = 0;
  for (size_t p = html.find("class=\"fp-label\""); p != std::string::npos; p = html.find("class=\"fp-label\"", p + 1))
    ++fp_lines;
  EXPECT_EQ(fp_lines, 1u);
  const std::string md = compare_table(runs, true);
  std::istringstream in(md);
  std::string line;
  int rows = 0;
  while (std::getline(in, line)) {
    ++rows;
    EXPECT_EQ(line.front(), '|');
    EXPECT_EQ(line.back(), '|');
  }
  EXPECT_EQ(rows, 5) << md;  // header, separator, 3 runs
  EXPECT_NE(md.find("runs/<b\\|c>"), std::string::npos) << md;
  const std::string plain = compare_table(runs, false);
  EXPECT_EQ(plain.find('|'), plain.find("b|c") + 1) << "plain text keeps | as is";
}

}  // namespace
}  // namespace glvq
