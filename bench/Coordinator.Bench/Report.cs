using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Coordinator.Bench;

/// <summary>Collects the figures of one run and writes them as Markdown and JSON.</summary>
public sealed class Report
{
    private readonly List<(string Section, List<string[]> Rows, string[] Header, List<string> Notes)> _sections = [];
    private readonly JsonObject _json = new();

    public JsonObject Json => _json;

    public void Table(string section, string[] header, IEnumerable<string[]> rows, params string[] notes)
    {
        _sections.Add((section, rows.ToList(), header, notes.ToList()));
        Console.WriteLine($"\n## {section}");
        Console.WriteLine(string.Join(" | ", header));
        foreach (var row in _sections[^1].Rows) Console.WriteLine(string.Join(" | ", row));
        foreach (var note in notes) Console.WriteLine($"  note: {note}");
    }

    public void Set(string path, object? value)
    {
        var node = _json;
        var parts = path.Split('.');
        foreach (var part in parts[..^1])
        {
            if (node[part] is not JsonObject child) node[part] = child = new JsonObject();
            node = child;
        }
        node[parts[^1]] = JsonSerializer.SerializeToNode(value);
    }

    public async Task WriteAsync(string directory, string name, string title, IEnumerable<string> preamble)
    {
        Directory.CreateDirectory(directory);
        var markdown = new StringBuilder($"# {title}\n\n");
        foreach (var line in preamble) markdown.AppendLine(line);
        foreach (var (section, rows, header, notes) in _sections)
        {
            markdown.Append($"\n## {section}\n\n| {string.Join(" | ", header)} |\n|{string.Concat(header.Select(_ => " --- |"))}\n");
            foreach (var row in rows) markdown.Append($"| {string.Join(" | ", row)} |\n");
            foreach (var note in notes) markdown.Append($"\n{note}\n");
        }
        await File.WriteAllTextAsync(Path.Combine(directory, name + ".md"), markdown.ToString());
        await File.WriteAllTextAsync(Path.Combine(directory, name + ".json"), _json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    public static string Ms(double value) => double.IsNaN(value) ? "n/a" : value.ToString(value < 10 ? "F2" : "F1", CultureInfo.InvariantCulture) + " ms";

    public static string Num(double value, string format = "F0") => double.IsNaN(value) ? "n/a" : value.ToString(format, CultureInfo.InvariantCulture);

    public static string Verdict(bool ok) => ok ? "met" : "**not met**";
}
