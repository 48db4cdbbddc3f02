export function NotFound() {
  return (
    <section>
      <h1>Page not found</h1>
      <p>
        There is no such page. <a href="/runs">See the runs</a>.
      </p>
    </section>
  );
}
