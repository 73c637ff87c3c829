// Hosting Portcullis inside your own ASP.NET Core app, as YARP's AddReverseProxy() does.
// The gateway reads its routes, clusters and listeners from portcullis.yaml and reloads it on change;
// the app can add its own endpoints and services next to it.
var builder = WebApplication.CreateBuilder(args);
builder.Services.AddPortcullis(options =>
{
    options.ConfigPath = Path.Combine(AppContext.BaseDirectory, "portcullis.yaml");
});

var app = builder.Build();
app.UsePortcullis();

// An endpoint of the host itself, next to the gateway's routes.
app.MapGet("/hello", () => "hello from the host app\n");

app.Run();
