export function Deployments() {
  return (
    <section>
      <h1>Deployments</h1>
    </section>
  );
}
