// Comment list on the issue page.

function renderComment(comment) {
  const item = document.createElement('li');
  item.className = 'comment';
  const author = document.createElement('strong');
  author.textContent = comment.author;
  const text = document.createElement('p');
  text.textContent = comment.text;
  item.append(author, text);
  return item;
}

export async function loadComments(list, issueId) {
  const response = await fetch(`/api/issues/${encodeURIComponent(issueId)}/comments`);
  if (!response.ok) {
    throw new Error(`comments request failed: ${response.status}`);
  }
  const comments = await response.json();
  list.replaceChildren(...comments.map(renderComment));
}
