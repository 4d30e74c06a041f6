// The search report as a page people look at: one self-contained HTML file (inline SVG and CSS,
// no script, no network access: a Content-Security-Policy of default-src 'none' says so to the
// browser) written next to report.md in every result directory.
//
//   ReportInputs in{.title = "job j-42", .report_json = r.report_json(), ...};
//   NAS_ASSIGN_OR_RETURN(std::string html, RenderReportHtml(in));
//
// Sections, each with an id a test or a person can find:
//   #summary   the job's facts and the derived network against the baseline (a table);
//   #heatmap   architecture probabilities per edge over the search: one row per edge
//              (g.heatmap-row), one column per arch step (sampled evenly past max_columns), the
//              cell's colour the most probable candidate and its depth that probability; the
//              final distribution of each edge as a stacked bar at the row's end;
//   #latency   expected latency against its target over the search;
//   #training  the arch steps' training loss and validation accuracy;
//   #network   the derived network block by block (g.block: kernel and expansion to scale,
//              skipped blocks dashed, stage boundaries with their width and stride);
//   #pareto    accuracy against predicted latency: paths of the trained supernet evaluated with
//              their inherited weights (report.json's "sampled_paths", derived and baseline
//              paths among them) with their Pareto front, and the derived and baseline networks
//              trained from scratch.
// Every input is checked as it would be from outside: a malformed document is InvalidArgument
// naming it (and the history line); nothing throws; text from the inputs is escaped.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace nas {

struct ReportInputs {
  std::string title;                 // e.g. "job j-1733390000-1" or "local search"
  std::string report_json;           // report.json
  std::vector<std::string> history;  // alpha_history.jsonl, one line each
  std::string space_json;            // search_space.json
  std::string architecture_json;     // architecture.json (the derived network)
};

struct ReportHtmlOptions {
  // History lines read at most; more is InvalidArgument. Default 1,000,000.
  size_t max_history_lines = 1000000;
  // Heat-map columns at most (arch steps beyond it are sampled evenly, the last always kept).
  // Default 240.
  int max_columns = 240;
};

absl::StatusOr<std::string> RenderReportHtml(const ReportInputs& in,
                                             const ReportHtmlOptions& options = {});

// Reads report.json, alpha_history.jsonl, search_space.json and architecture.json of the result
// directory `dir` and writes `dir`/report.html. Errors name the file.
absl::Status WriteReportHtml(const std::string& dir, const std::string& title);

}  // namespace nas
