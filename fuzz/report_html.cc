// RenderReportHtml (core/report_html.h): report.json and alpha_history.jsonl of a result
// directory drawn as report.html, over the fashion-mnist preset and a fixed architecture. The
// input's first line is report.json, every further line a history line. A page that renders
// has no script element and, with a history, one heat-map row per edge.
#include <string>
#include <vector>

#include "core/architecture.h"
#include "core/report_html.h"
#include "core/search_space.h"
#include "fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const nas::SearchSpace* space =
      new nas::SearchSpace(*nas::SearchSpace::Preset("fashion-mnist"));
  static const std::string* space_json = new std::string(space->ToJson());
  static const std::string* arch_json = new std::string(
      nas::Architecture{space->name(), std::vector<int>(space->num_edges(), 0)}.ToJson(*space));
  const std::string text = nas::fuzz::Text(data, size);
  nas::ReportInputs in;
  in.title = "fuzz <&>";
  in.space_json = *space_json;
  in.architecture_json = *arch_json;
  size_t start = 0;
  bool first = true;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    if (first) {
      in.report_json = line;
      first = false;
    } else if (!line.empty()) {
      in.history.push_back(line);
    }
    start = end + 1;
  }
  nas::ReportHtmlOptions o;
  o.max_history_lines = 1000;
  absl::StatusOr<std::string> html = nas::RenderReportHtml(in, o);
  if (!html.ok()) return 0;
  nas::fuzz::Require(html->find("<script") == std::string::npos, "no script element");
  if (!in.history.empty()) {
    size_t rows = 0;
    for (size_t p = html->find("class=\"heatmap-row\""); p != std::string::npos;
         p = html->find("class=\"heatmap-row\"", p + 1)) {
      ++rows;
    }
    nas::fuzz::Require(rows == static_cast<size_t>(space->num_edges()),
                       "one heat-map row per edge");
  }
  return 0;
}
